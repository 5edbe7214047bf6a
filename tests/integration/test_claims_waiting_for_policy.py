"""A claim that reaches the log before its policy waits for it (issue #17, break 10), against the
real databases: the claims service's decision handler, given recorded events in log order."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import func, select

from services.claims.handlers import ClaimsHandler
from services.claims.tables import deferred
from services.claims.tables import metadata as claims_tables
from services.enrollment.decider import EnrollmentState
from services.enrollment.decider import decide as enrol
from shared.events import EventMessage, RecordedEvent
from shared.events.consumer import Incoming, process_batch
from shared.events.inbox import metadata as inbox_tables
from shared.events.store import EventStore
from shared.events.subjects import EVENTS_STREAM, event_subject
from tests.unit.builders import death, medical, registration

T0 = datetime(2024, 6, 12, 1, 0, tzinfo=timezone.utc)
POLICY = enrol(registration(), EnrollmentState())


class Log:
    """Events as the log would hand them to the claims service: numbered, recorded at given times."""

    def __init__(self) -> None:
        self.position = 0

    def __call__(self, payload, recorded_at: datetime = T0) -> tuple[EventMessage, Incoming]:  # type: ignore[no-untyped-def]
        self.position += 1
        message = EventMessage.new(payload, source="test", occurred_at=recorded_at)
        event = RecordedEvent(**dict(message), stream_id=f"s-{self.position}", stream_version=1, position=self.position,
                              recorded_at=recorded_at)
        return message, Incoming(subject=event_subject(message.event_type), body=event.model_dump_json().encode(),
                                 headers={}, stream=EVENTS_STREAM, sequence=self.position)


async def decisions(store: EventStore) -> list[tuple[str, str]]:
    log = [e async for batch in store.read_all() for e in batch]
    return [(e.payload.claim_id, e.event_type if e.event_type != "ClaimRejected" else f"ClaimRejected:{e.payload.reason}")
            for e in log if e.event_type in ("ClaimDeferred", "ClaimPaid", "ClaimRejected")]


async def waiting(store: EventStore) -> int:
    with store.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(deferred))).scalar_one()


async def test_a_claim_recorded_before_its_policy_is_paid_when_the_policy_arrives(store: EventStore) -> None:
    await store.create_schema(inbox_tables, claims_tables)
    log, handler = Log(), ClaimsHandler()
    claim, claim_in = log(death(POLICY.insured[0].resident_id, claim_id="C1", policy_number=POLICY.policy_number))
    _, policy_in = log(POLICY, T0 + timedelta(minutes=1))

    await process_batch(store, handler, [claim_in])
    await process_batch(store, handler, [policy_in])
    await process_batch(store, handler, [policy_in])  # delivered again: nothing more

    assert await decisions(store) == [("C1", "ClaimDeferred"), ("C1", "ClaimPaid")]
    events = [e async for batch in store.read_all() for e in batch]
    deferral, paid = (e for e in events if e.event_type in ("ClaimDeferred", "ClaimPaid"))
    assert (paid.causation_id, paid.correlation_id, paid.stream_id) == (deferral.event_id, claim.correlation_id, "claim-C1")
    assert paid.payload.deferred_on == T0.date() and await waiting(store) == 0


async def test_a_claim_and_its_policy_in_one_batch_are_decided_in_it(store: EventStore) -> None:
    await store.create_schema(inbox_tables, claims_tables)
    log = Log()
    number = POLICY.insured[1].resident_id
    first = log(medical(number, 10_000_00, claim_id="C1", policy_number=POLICY.policy_number))[1]
    second = log(medical(number, 8_000_00, claim_id="C2", policy_number=POLICY.policy_number))[1]

    await process_batch(store, ClaimsHandler(), [first, second, log(POLICY)[1]])

    log_events = [e async for batch in store.read_all() for e in batch]
    paid = [(e.payload.claim_id, e.payload.amount_fen) for e in log_events if e.event_type == "ClaimPaid"]
    assert paid == [("C1", 10_000_00), ("C2", 4_000_00)]  # the household's 14,000-yuan limit, in arrival order
    assert await waiting(store) == 0


async def test_a_claim_without_its_policy_for_30_days_of_log_time_is_rejected_unknown_policy(store: EventStore) -> None:
    await store.create_schema(inbox_tables, claims_tables)
    log, handler = Log(), ClaimsHandler()
    number = POLICY.insured[0].resident_id
    await process_batch(store, handler, [log(death(number, claim_id="C1", policy_number="P2024-nowhere-0"))[1]])

    later = death(number, claim_id="C2", policy_number="P2024-nowhere-1")
    await process_batch(store, handler, [log(later, T0 + timedelta(days=30) - timedelta(seconds=1))[1]])
    assert await decisions(store) == [("C1", "ClaimDeferred"), ("C2", "ClaimDeferred")]

    await process_batch(store, handler, [log(POLICY, T0 + timedelta(days=30))[1]])

    assert await decisions(store) == [("C1", "ClaimDeferred"), ("C2", "ClaimDeferred"), ("C1", "ClaimRejected:unknown_policy")]
    assert await waiting(store) == 1  # C2 still has a second to wait
