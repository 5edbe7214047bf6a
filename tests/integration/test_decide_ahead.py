"""Batches decided before the log's write lock (``Preparing`` handlers): written as decided while
the consumer's state stands still, decided again under the lock when another instance changed it
meanwhile. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone

from sqlalchemy import func, select

from services.claims.handlers import ClaimsHandler
from services.claims.tables import metadata as claims_tables
from services.claims.tables import policies as claims_policies
from services.enrollment.decider import EnrollmentState
from services.enrollment.decider import decide as enrol
from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import insured_households
from services.enrollment.tables import metadata as enrollment_tables
from services.subsidy.handlers import SubsidyHandler
from services.subsidy.tables import line_usage
from services.subsidy.tables import metadata as subsidy_tables
from shared.events import EventMessage, RecordedEvent
from shared.events.consumer import Incoming, process_batch
from shared.events.inbox import consumer_version, processed_messages
from shared.events.inbox import metadata as inbox_tables
from shared.events.store import EventStore
from shared.events.enrollment import HouseholdCategory, Payer
from shared.events.subjects import EVENTS_STREAM, event_subject, inbound_stream, inbound_subject
from tests.support.programme import households, plan
from tests.unit.builders import medical, registration


def incoming(event: EventMessage, sequence: int) -> Incoming:
    return Incoming(subject=inbound_subject("county", event.event_type), body=event.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": str(event.event_id)}, stream=inbound_stream("county"), sequence=sequence)


def sent_again(event: EventMessage) -> EventMessage:
    """The same registration under a new event id: the county sent it twice."""
    return EventMessage.new(event.payload, source=event.source, occurred_at=event.occurred_at)


class HoldsItsFirstDecision:
    """Mixed into a handler: once it has decided its first batch, it waits before the batch is written."""

    def __init__(self) -> None:
        self.decided = threading.Event()  # prepare runs in the consumer's worker thread
        self.go_on = threading.Event()
        self.prepared = 0

    def prepare(self, conn, events: Sequence[EventMessage]):  # type: ignore[no-untyped-def]
        prepared = super().prepare(conn, events)  # type: ignore[misc]
        self.prepared += 1
        if self.prepared == 1:
            self.decided.set()
            assert self.go_on.wait(30)
        return prepared


class HeldEnrollment(HoldsItsFirstDecision, EnrollmentHandler):
    pass


class HeldSubsidy(HoldsItsFirstDecision, SubsidyHandler):
    pass


class HeldClaims(HoldsItsFirstDecision, ClaimsHandler):
    pass


async def outcomes_of(store: EventStore, household_id: str) -> list[str]:
    return [e.event_type async for batch in store.read_all() for e in batch
            if getattr(e.payload, "household_id", None) == household_id and e.event_type != "HouseholdRegistered"]


async def test_a_batch_decided_before_the_lock_is_written_as_decided_and_counts_a_version(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    regs = households(3, seed=5)
    result = await process_batch(store, EnrollmentHandler(), [incoming(r, n) for n, r in enumerate(regs, 1)])
    assert (result.handled, result.duplicates) == (3, 0)
    with store.engine.connect() as conn:
        assert consumer_version(conn, EnrollmentHandler.consumer) == 1
    again = await process_batch(store, EnrollmentHandler(), [incoming(r, n) for n, r in enumerate(regs, 1)])
    assert (again.handled, again.duplicates) == (0, 3)
    with store.engine.connect() as conn:
        assert consumer_version(conn, EnrollmentHandler.consumer) == 1  # nothing changed
    assert await outcomes_of(store, regs[0].payload.household_id) == ["PolicyIssued"]


async def test_a_batch_decided_on_state_that_another_instance_changed_is_decided_again_under_the_lock(
        store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    (reg,) = households(1, seed=9)
    twice = sent_again(reg)
    held = HeldEnrollment()
    # The first instance decides a policy for the household, and waits to write it...
    first = asyncio.create_task(process_batch(store, held, [incoming(reg, 1)]))
    assert await asyncio.to_thread(held.decided.wait, 30)
    # ...while another instance insures the same household from the county's second sending.
    other = await process_batch(store, EnrollmentHandler(), [incoming(twice, 2)])
    assert other.handled == 1
    held.go_on.set()
    result = await asyncio.wait_for(first, 30)
    assert result.handled == 1 and held.prepared == 2  # decided again, under the lock
    household = reg.payload.household_id
    assert sorted(await outcomes_of(store, household)) == ["HouseholdRejected", "PolicyIssued"]
    with store.engine.connect() as conn:
        assert (conn.execute(select(func.count()).select_from(insured_households))).scalar_one() == 1
        assert (conn.execute(select(func.count()).select_from(processed_messages))).scalar_one() == 2
        assert consumer_version(conn, EnrollmentHandler.consumer) == 2


def published(event: RecordedEvent) -> Incoming:
    return Incoming(subject=event_subject(event.event_type), body=event.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": str(event.event_id)}, stream=EVENTS_STREAM, sequence=event.position)


async def test_line_usage_decided_on_state_another_instance_changed_is_counted_again_not_overwritten(
        store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables, subsidy_tables)
    regs = [r.model_copy(update={"payload": r.payload.model_copy(update={
        "category": HouseholdCategory.special_family, "payer": Payer.government,
        "units": 3})}) for r in households(3, seed=13)]  # 3 units: every member's subsidy within the premium
    county = [plan(year=regs[0].payload.programme_year), *regs]
    assert (await process_batch(store, EnrollmentHandler(), [incoming(e, n) for n, e in enumerate(county, 1)])).handled == 4
    log = {e.event_type + getattr(e.payload, "household_id", ""): e async for batch in store.read_all() for e in batch}
    earlier, first_policy, second_policy = (log["PolicyIssued" + r.payload.household_id] for r in regs)
    # The plan and a first policy: the line's usage row exists, so what follows updates it.
    assert (await process_batch(store, SubsidyHandler(), [published(log["SubsidyPlanPublished"]),
                                                          published(earlier)])).handled == 2

    held = HeldSubsidy()
    first = asyncio.create_task(process_batch(store, held, [published(first_policy)]))
    assert await asyncio.to_thread(held.decided.wait, 30)
    assert (await process_batch(store, SubsidyHandler(), [published(second_policy)])).handled == 1
    held.go_on.set()
    assert (await asyncio.wait_for(first, 30)).handled == 1
    assert held.prepared == 2  # decided again, under the lock, on the usage the other instance left

    approved = [e async for batch in store.read_all(event_types=["SubsidyApproved"]) for e in batch]
    persons = sum(len(p.payload.insured) for p in (earlier, first_policy, second_policy))
    assert len(approved) == persons
    with store.engine.connect() as conn:
        usage = (conn.execute(select(line_usage.c.persons, line_usage.c.amount_fen))).one()
    assert tuple(usage) == (persons, sum(e.payload.amount_fen for e in approved))


def in_the_log(payload, position: int) -> Incoming:  # type: ignore[no-untyped-def]
    """An event as the log hands it to the services that consume it, recorded at ``position``."""
    message = EventMessage.new(payload, source="test", occurred_at=datetime(2024, 6, 12, 1, tzinfo=timezone.utc))
    return published(RecordedEvent(**dict(message), stream_id=f"s-{position}", stream_version=1, position=position,
                                   recorded_at=message.occurred_at))


async def test_a_claim_decided_on_cover_another_instance_used_meanwhile_is_paid_from_what_is_left(
        store: EventStore) -> None:
    await store.create_schema(inbox_tables, claims_tables)
    policy = enrol(registration(), EnrollmentState())  # a household medical limit of 14,000 yuan
    number = policy.insured[1].resident_id
    assert (await process_batch(store, ClaimsHandler(), [in_the_log(policy, 1)])).handled == 1
    held = HeldClaims()
    # The first instance decides 10,000 yuan for one claim, and waits to write it...
    claim = medical(number, 10_000_00, claim_id="C1", policy_number=policy.policy_number)
    first = asyncio.create_task(process_batch(store, held, [in_the_log(claim, 2)]))
    assert await asyncio.to_thread(held.decided.wait, 30)
    # ...while another instance pays 8,000 yuan of the same household's limit for another.
    other = medical(number, 8_000_00, claim_id="C2", policy_number=policy.policy_number)
    assert (await process_batch(store, ClaimsHandler(), [in_the_log(other, 3)])).handled == 1
    held.go_on.set()
    assert (await asyncio.wait_for(first, 30)).handled == 1
    assert held.prepared == 2  # decided again, under the lock, on the cover the other instance left
    paid = {e.payload.claim_id: (e.payload.amount_fen, e.payload.limited_by)
            async for batch in store.read_all(event_types=["ClaimPaid"]) for e in batch}
    assert paid == {"C2": (8_000_00, None), "C1": (6_000_00, "household_medical_limit")}
    with store.engine.connect() as conn:
        assert conn.execute(select(claims_policies.c.medical_remaining_fen)).scalar_one() == 0


async def test_a_handler_keeping_its_own_checkpoint_is_given_inputs_that_are_not_events(store: EventStore) -> None:
    # The reporting projection parses published events into its own facts (no event ids of
    # theirs): a batch of them is handled as a whole, and nothing is marked in the inbox.
    from services.reporting.handlers import ReportingHandler
    from services.reporting.tables import metadata as reporting_tables
    from shared.events.relay import published_body

    await store.create_schema(reporting_tables, inbox_tables)
    registrations = households(3)
    await store.append("plan", [plan()])
    for event in registrations:
        await store.append(f"h-{event.event_id}", [event])
    rows = [row async for page in store.read_rows(0) for row in page]
    messages = [Incoming(subject=event_subject(row[4]), body=published_body(row), headers={"Nats-Msg-Id": row[1]},
                         stream=EVENTS_STREAM, sequence=row[0]) for row in rows]
    result = await process_batch(store, ReportingHandler(store), messages)
    assert (result.handled, result.dead_lettered, result.failed) == (len(rows), 0, [])
    with store.engine.connect() as conn:
        assert (conn.execute(select(func.count()).select_from(processed_messages))).scalar_one() == 0


async def test_a_batch_says_how_long_it_decided_waited_for_the_lock_wrote_and_committed(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    handler = HeldEnrollment()
    regs = households(2, seed=11)
    batch = asyncio.create_task(process_batch(store, handler, [incoming(r, n) for n, r in enumerate(regs, 1)]))
    assert await asyncio.to_thread(handler.decided.wait, 30)
    await asyncio.sleep(0.2)  # the decision takes at least this long
    locked = threading.Event()

    def hold_the_lock() -> None:
        with store.transaction() as tx:
            tx.lock()
            locked.set()
            time.sleep(0.3)

    holder = asyncio.create_task(asyncio.to_thread(hold_the_lock))
    assert await asyncio.to_thread(locked.wait, 30)
    handler.go_on.set()  # decided: the batch now waits for the lock the holder keeps a while yet
    result = await batch
    await holder
    assert result.handled == 2
    timings = result.timings
    assert set(timings) == {"decide_ms", "lock_wait_ms", "write_ms", "commit_ms"}
    assert timings["decide_ms"] >= 200 and timings["lock_wait_ms"] >= 150, timings
    assert timings["write_ms"] >= 0 and timings["commit_ms"] >= 0
