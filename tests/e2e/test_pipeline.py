"""End to end: households in, policies, subsidies and claims out, in the log and on NATS."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from shared.events.audit import verify_chain
from shared.events.claims import ClaimKind
from shared.events.inbox import dead_letters
from shared.events.store import EventStore
from shared.events.subjects import EVENTS_STREAM, inbound_subject
from tests.support.pipeline import Pipeline
from tests.support.programme import claim, households, medical, plan, subsidised_persons, unknown_policy_claim



async def published_events(pipeline: Pipeline) -> list[tuple[str, dict]]:
    """Every message on the recorded-events stream: (Nats-Msg-Id, body)."""
    sub = await pipeline.js.pull_subscribe("guanhuai.events.>", stream=EVENTS_STREAM)
    out = []
    while True:
        try:
            msgs = await sub.fetch(500, timeout=1)
        except Exception:  # noqa: BLE001 - nothing more to fetch
            break
        out += [(m.headers["Nats-Msg-Id"], json.loads(m.data)) for m in msgs]
    await sub.unsubscribe()
    return out


async def test_households_become_policies_subsidies_and_paid_claims(pipeline: Pipeline) -> None:
    await whole_pipeline(pipeline)


async def test_the_whole_pipeline_on_postgresql(pg_pipeline: Pipeline) -> None:
    await whole_pipeline(pg_pipeline)


async def whole_pipeline(pipeline: Pipeline) -> None:
    """Households in; policies, subsidies and claims out, in the log and on NATS."""
    await pipeline.publish("county", [plan()])
    regs = households(40)
    await pipeline.publish("county", regs)
    await pipeline.wait_for(lambda c: c["PolicyIssued"] == 40)
    await pipeline.publish("insurer", [
        claim(regs[0], ClaimKind.death, "C-death"),
        medical(regs[1], "C-med"),
        unknown_policy_claim("C-unknown"),
    ])
    counts = await pipeline.wait_for(lambda c: c["ClaimPaid"] == 2 and c["ClaimDeferred"] == 1)  # C-unknown waits for its policy
    counts = await pipeline.settled()

    government = [r for r in regs if r.payload.payer == "government"]
    assert counts["HouseholdRegistered"] == 40 and counts["PolicyIssued"] == 40
    # 40 yuan a person until the policy's premium is covered; the rest premium_covered.
    assert counts["SubsidyApproved"] == subsidised_persons(regs)
    assert counts["SubsidyRejected"] == sum(len(r.payload.members) for r in government) - subsidised_persons(regs)
    assert counts["CoverEnded"] == 1  # the death ends that person's cover

    store = await EventStore.open(pipeline.db_url, create=False)
    log = [e async for batch in store.read_all() for e in batch]
    assert (await verify_chain(store)).ok
    await store.close()
    paid = {e.payload.claim_id: e.payload.amount_fen for e in log if e.event_type == "ClaimPaid"}
    death_share = next(e for e in log if e.event_type == "PolicyIssued" and e.payload.household_id == regs[0].payload.household_id)
    assert paid["C-death"] == death_share.payload.insured[0].death_disability_sum_fen
    assert paid["C-med"] == round((500_000 - 200_000 - 10_000) * 0.8)

    # Every committed event reached NATS once, carrying its event id as Nats-Msg-Id, in log order.
    on_nats = await published_events(pipeline)
    assert [body["event_id"] for _, body in on_nats] == [str(e.event_id) for e in log]
    assert all(msg_id == body["event_id"] for msg_id, body in on_nats)
    assert [body["position"] for _, body in on_nats] == list(range(1, len(log) + 1))


async def test_the_same_event_sent_twice_is_recorded_once(pipeline: Pipeline) -> None:
    reg, other = households(2, seed=5)
    await pipeline.publish("county", [reg, reg])
    # The same event under another Nats-Msg-Id gets past JetStream's de-duplication: the service
    # must still see it as already handled.
    await pipeline.publish_raw(inbound_subject("county", "HouseholdRegistered"), reg.model_dump_json().encode(), "other-id")
    # A new event for the same household is a second registration: rejected, not a second policy.
    again = reg.model_copy(update={"event_id": other.event_id, "correlation_id": other.event_id})
    await pipeline.publish("county", [again])
    counts = await pipeline.wait_for(lambda c: c["HouseholdRejected"] == 1)
    counts = await pipeline.settled()
    assert counts["HouseholdRegistered"] == 2 and counts["PolicyIssued"] == 1


async def test_a_poison_message_between_good_ones_is_dead_lettered_and_the_rest_processed(pipeline: Pipeline) -> None:
    good = households(3, seed=9)
    subject = inbound_subject("county", "HouseholdRegistered")
    await pipeline.publish("county", [good[0]])
    await pipeline.publish_raw(subject, b"\xff\xfe not json", "poison-bytes")
    bad_schema = json.loads(good[1].model_dump_json())
    bad_schema["payload"]["members"][0]["birth_date"] = "not a date"
    bad_schema["event_id"] = "6f1b2b8e-8a3b-4c55-9d55-2b8a1c1e0a01"
    await pipeline.publish_raw(subject, json.dumps(bad_schema).encode(), "poison-schema")
    await pipeline.publish_raw("guanhuai.in.county.HouseholdTeleported", good[2].model_dump_json().encode(), "poison-type")
    await pipeline.publish_raw(subject, b'{"x": "' + b"a" * 300_000 + b'"}', "poison-size")
    await pipeline.publish("county", [good[1], good[2]])
    await pipeline.wait_for(lambda c: c["PolicyIssued"] == 3)

    store = await EventStore.open(pipeline.db_url, create=False)
    with store.engine.connect() as conn:
        rows = (conn.execute(select(dead_letters).order_by(dead_letters.c.nats_sequence))).all()
    await store.close()
    assert [r.reason for r in rows] == ["not_json", "invalid_payload", "subject_mismatch", "oversized"]
    assert rows[0].body == b"\xff\xfe not json"
    assert "payload.members.0.birth_date" in rows[1].detail
    assert json.loads(rows[0].headers)["Nats-Msg-Id"] == "poison-bytes"


async def test_no_log_line_shows_a_whole_resident_id(pipeline: Pipeline) -> None:
    regs = households(10, seed=11)
    await pipeline.publish("county", regs)
    bad = json.loads(regs[0].model_dump_json())
    bad["event_id"] = "7e57ab1e-0000-4000-8000-000000000001"
    bad["payload"]["units"] = "many"  # a rejected message quoting member data in its detail
    await pipeline.publish_raw(inbound_subject("county", "HouseholdRegistered"), json.dumps(bad).encode(), "bad-units")
    await pipeline.wait_for(lambda c: c["PolicyIssued"] == 10)
    await pipeline.settled()
    await pipeline.stop()
    output = pipeline.all_output()
    assert "dead_lettered" in output and "batch_done" in output
    ids = {m.resident_id for r in regs for m in r.payload.members}
    leaked = [i for i in ids if i in output]
    assert leaked == []
    assert not re.search(r"\d{17}[\dX]", output)
