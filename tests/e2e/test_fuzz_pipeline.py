"""End to end: a few hundred hostile messages on every inbound subject, among good households.

Each hostile message must be accounted for, from the log and the dead letters alone: rejected (a
rejection event caused by it), dead-lettered (a row with a reason and its original bytes), or
accepted (recorded, and decided where a decision is due). Good households still get their
policies, no service stops, and the log still verifies and reads back whole.
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import date

import nats.js.errors
from sqlalchemy import select

from guanhuai.simulate import Area, registration_messages
from shared.events import EventMessage
from shared.events.audit import verify_chain
from shared.events.claims import ClaimKind
from shared.events.enrollment import HouseholdCorrected, PolicyCancellationRequested
from shared.events.inbox import dead_letters
from shared.events.programme import AreaLevel, AreaRegistered, ProductTermsPublished
from shared.events.producers import recorded_id
from shared.events.store import EventStore
from shared.events.subjects import INBOUND_PREFIX, INBOUND_STREAMS, PRODUCER_EVENTS
from shared.events.subsidy import SubsidyPlanCloseRequested
from tests.support.events import target
from tests.support.hostile import CATEGORIES, KIND_OF, Hostile, hostile
from tests.support.pipeline import Pipeline
from tests.support.programme import TOWNS, claim, households, medical, plan

HOSTILE = 320
GOOD = 40
REJECTIONS = {"HouseholdRejected", "ClaimRejected", "SubsidyPlanRequestRefused", "CorrectionRefused"}
DECISION_DUE = {"HouseholdRegistered", "ClaimReported", "HouseholdCorrected", "PolicyCancellationRequested"}  # the others may lead to nothing at all
DOOR_REASONS = {"not_json", "too_deeply_nested", "invalid_envelope", "invalid_payload", "unknown_event_type",
                "unsupported_schema_version", "subject_mismatch", "oversized"}


def bases(rng: random.Random, good: list[EventMessage]) -> dict[str, list[EventMessage]]:
    """Valid messages of every inbound type to mutate. Households of their own (another region, so
    no ID number of a good household), claims on the good households' policies."""
    own = list(registration_messages(rng, 20, year=2024, townships=[Area("fuzzville", "530402")], source="county-fuzz"))
    return {
        "HouseholdRegistered": own,
        "HouseholdCorrected": [EventMessage.new(HouseholdCorrected(**own[0].payload.model_dump(), corrects=own[0].event_id),
                                                source="county-fuzz")],
        "ProductTermsPublished": [EventMessage.new(ProductTermsPublished(  # a year of its own: the good households keep theirs
            programme_year=2031, product="模糊险", premium_per_unit_fen=100_00, death_disability_per_unit_fen=200_000_00,
            medical_limit_per_unit_fen=14_000_00, deductible_fen=100_00, payment_ratio="0.8"), source="county-fuzz")],
        "PolicyCancellationRequested": [EventMessage.new(PolicyCancellationRequested(
            household_id=own[1].payload.household_id, programme_year=2024, reason="registered_in_error"), source="county-fuzz")],
        "TownshipTargetSet": [target("fuzzville", year=2024)],
        "AreaRegistered": [EventMessage.new(AreaRegistered(code="fuzzville", name="模糊镇", level=AreaLevel.township,
                                                           parent_code="530402"), source="county-fuzz")],
        "SubsidyPlanPublished": [plan(plan_id="FZ-2024")],
        "SubsidyPlanCloseRequested": [EventMessage.new(SubsidyPlanCloseRequested(plan_id="FZ-2024", closed_on=date(2024, 5, 1)),
                                                       source="county-fuzz")],
        "ClaimReported": [claim(good[0], ClaimKind.death, "FZ-C-death"), medical(good[1], "FZ-C-med"),
                          claim(good[2], ClaimKind.disability, "FZ-C-dis", disability_grade=5)],
    }


def hostile_messages(rng: random.Random, good: list[EventMessage]) -> list[Hostile]:
    """Every category on every inbound type, in a seeded order."""
    by_type = bases(rng, good)
    types = [t for kind in PRODUCER_EVENTS.values() for t in kind]
    categories = sorted(CATEGORIES)
    out = []
    for i in range(HOSTILE):
        event_type = types[(i + i // len(categories)) % len(types)]
        out.append(hostile(rng, rng.choice(by_type[event_type]), categories[i % len(categories)]))
    return out


async def test_every_hostile_message_is_rejected_dead_lettered_or_accepted_and_nothing_stops(pipeline: Pipeline) -> None:
    rng = random.Random(20261122)
    good = households(GOOD, seed=3)
    bad = hostile_messages(rng, good)
    assert {h.subject.split(".")[2] for h in bad} >= set(PRODUCER_EVENTS)  # county and insurer
    assert {h.subject.split(".")[3] for h in bad} >= set(KIND_OF)  # every inbound event type, and unknown ones

    # The good households' townships are registered first: once a county has registered a township,
    # households are checked against its areas (the hostile AreaRegistered below turns that on).
    await pipeline.publish("county", [EventMessage.new(AreaRegistered(code=town.code, name=town.code, level=AreaLevel.township,
                                                                      parent_code="350400"), source="county-fuzz")
                                      for town in TOWNS])
    sequences: dict[tuple[str, int], Hostile] = {}  # by (stream, sequence): one inbound stream per producer kind
    for i, message in enumerate(bad):
        if i % (HOSTILE // GOOD) == 0:
            await pipeline.publish("county", [good[i // (HOSTILE // GOOD)]])
        ack = await pipeline.js.publish(message.subject, message.body, headers={"Nats-Msg-Id": message.msg_id})
        assert ack.stream in INBOUND_STREAMS.values() and not ack.duplicate
        sequences[(ack.stream, ack.seq)] = message
    # A producer kind no service reads: the stream does not take it, so the sender knows.
    refused = 0
    for subject in (f"{INBOUND_PREFIX}.bank.HouseholdRegistered", f"{INBOUND_PREFIX}.county", f"{INBOUND_PREFIX}.x.y.z"):
        try:
            await pipeline.js.publish(subject, good[0].model_dump_json().encode(), headers={"Nats-Msg-Id": subject})
        except nats.js.errors.NoStreamResponseError:
            refused += 1
    assert refused == 3

    await pipeline.settled(quiet_s=2.0, timeout=150)
    assert all(p.poll() is None for p in pipeline.processes.values()), pipeline.tail_logs()

    store = await EventStore.open(pipeline.db_url, create=False)
    try:
        log = [e async for batch in store.read_all() for e in batch]  # every row still reads back
        assert (await verify_chain(store)).ok
        with store.engine.connect() as conn:
            letters = (conn.execute(select(dead_letters))).all()
    finally:
        await store.close()

    recorded = {str(e.event_id): e for e in log}
    caused: dict[str, list[str]] = {}
    for e in log:
        if e.causation_id is not None:
            caused.setdefault(str(e.causation_id), []).append(e.event_type)
    at_door = {(r.nats_stream, r.nats_sequence): r for r in letters if r.nats_stream in INBOUND_STREAMS.values()}
    downstream = {r.event_id: r for r in letters if r.nats_stream not in INBOUND_STREAMS.values()}
    assert all(r.reason and r.detail for r in letters)
    unforeseen = [r for r in letters if r.reason not in DOOR_REASONS]
    assert unforeseen == [], Counter(r.reason for r in letters)

    fate: Counter[str] = Counter()
    lost = []
    for seq, message in sequences.items():
        # The log's id of it: scoped by the producer kind of its subject (shared/events/producers.py).
        msg_id = message.msg_id if message.msg_id.startswith("fuzz-") else str(recorded_id(message.subject.split(".")[2], message.msg_id))
        event = recorded.get(msg_id)
        if seq in at_door:
            assert at_door[seq].body == message.body
            fate["dead-lettered"] += 1
        elif event is None:
            lost.append((message.category, message.subject))
        elif REJECTIONS & set(caused.get(msg_id, ())):
            fate["rejected"] += 1
        elif msg_id in downstream:
            fate["dead-lettered"] += 1
        elif event.event_type in DECISION_DUE and not caused.get(msg_id):
            lost.append((message.category, f"{event.event_type} recorded, never decided"))
        else:
            fate["accepted"] += 1
    print(f"fuzz: published {len(sequences)}, rejected {fate['rejected']}, dead-lettered {fate['dead-lettered']}, "
          f"accepted {fate['accepted']}, lost {len(lost)}; refused by the stream {refused}")
    assert lost == []
    assert len(sequences) == HOSTILE == fate["rejected"] + fate["dead-lettered"] + fate["accepted"]
    assert min(fate.values()) > 0

    policies = {str(e.causation_id) for e in log if e.event_type == "PolicyIssued"}
    assert {str(recorded_id("county", g.event_id)) for g in good} <= policies
