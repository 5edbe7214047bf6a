"""Policy numbers are unambiguous (issue #17, break 5), against the real databases: enrollment's and
claims' handlers, fed as the pipeline feeds them."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert

from services.claims.handlers import CONSUMES, ClaimsHandler, ClaimsIntakeHandler
from services.claims.tables import metadata as claims_tables
from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import insured_households
from services.enrollment.tables import metadata as enrollment_tables
from shared.events import EventMessage, RecordedEvent
from shared.events.claims import ClaimKind, ClaimReported
from shared.events.consumer import Incoming, process_batch
from shared.events.inbox import metadata as inbox_tables
from shared.events.store import EventStore
from shared.events.subjects import EVENTS_STREAM, event_subject, inbound_subject
from tests.support.probes import probe
from tests.support.programme import households


def sent(kind: str, message: EventMessage, sequence: int) -> Incoming:
    return Incoming(subject=inbound_subject(kind, message.event_type), body=message.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": str(message.event_id)}, stream=f"GUANHUAI_IN_{kind.upper()}", sequence=sequence)


def published(event: RecordedEvent) -> Incoming:
    return Incoming(subject=event_subject(event.event_type), body=event.model_dump_json().encode(), headers={},
                    stream=EVENTS_STREAM, sequence=event.position)


def household(seed: int, township: str, household_id: str) -> EventMessage:
    (reg,) = households(1, seed=seed)
    return EventMessage.new(reg.payload.model_copy(update={"township": township, "household_id": household_id}),
                            source="county-test")


async def recorded(store: EventStore) -> list[RecordedEvent]:
    return [e async for batch in store.read_all() for e in batch]


async def test_households_whose_numbers_used_to_collide_get_distinct_policies_and_a_claim_on_each_is_paid(
    store: EventStore,
) -> None:
    await store.create_schema(inbox_tables, enrollment_tables, claims_tables)
    # Township "A-B" with household "C", and township "A" with household "B-C": both were P2024-A-B-C.
    regs = [household(1, "A-B", "C"), household(2, "A", "B-C")]
    await process_batch(store, EnrollmentHandler(), [sent("county", r, n) for n, r in enumerate(regs, 1)])
    policies = [e.payload for e in await recorded(store) if e.event_type == "PolicyIssued"]
    assert len(policies) == 2

    # The insurer claims on the numbers as recorded (a death of each household's first insured).
    claims = []
    for n, policy in enumerate(policies):
        accident = policy.issued_on + timedelta(days=30)
        claims.append(EventMessage.new(ClaimReported(
            claim_id=f"K{n}", policy_number=policy.policy_number, resident_id=policy.insured[0].resident_id,
            accident_date=accident, reported_on=accident + timedelta(days=2), kind=ClaimKind.death,
            outcome_date=accident + timedelta(days=1)), source="insurer-test"))
    await process_batch(store, ClaimsIntakeHandler(), [sent("insurer", c, n) for n, c in enumerate(claims, 3)])
    await process_batch(store, ClaimsHandler(), [published(e) for e in await recorded(store) if e.event_type in CONSUMES])

    log = await recorded(store)
    paid = {e.payload.claim_id: e.payload.policy_number for e in log if e.event_type == "ClaimPaid"}
    rightly = {c.payload.claim_id: c.payload.policy_number for c in claims}  # type: ignore[attr-defined]
    numbers = {p.policy_number for p in policies}
    misdirected = sum(1 for claim_id, number in rightly.items() if paid.get(claim_id) != number)
    probe("policy_number_collision", households=len(regs), distinct_policies=len(numbers), misdirected_claims=misdirected)
    assert numbers == {"P2024-A%2DB-C", "P2024-A-B-C"}
    assert misdirected == 0 and len(paid) == 2


async def test_a_household_whose_new_number_was_issued_before_in_the_old_form_is_rejected_not_issued_twice(
    store: EventStore,
) -> None:
    await store.create_schema(inbox_tables, enrollment_tables, claims_tables)
    # A log from before the change: household "C" of township "A-B" holds P2024-A-B-C.
    with store.transaction() as tx:
        tx.connection.execute(insert(insured_households), {"programme_year": 2024, "household_id": "C",
                                                                 "policy_number": "P2024-A-B-C"})
    reg = household(2, "A", "B-C")  # whose number is P2024-A-B-C now

    result = await process_batch(store, EnrollmentHandler(), [sent("county", reg, 1)])

    outcomes = [(e.event_type, getattr(e.payload, "reasons", None)) for e in await recorded(store)
                if e.event_type in ("PolicyIssued", "HouseholdRejected")]
    assert (result.dead_lettered, result.failed) == (0, [])
    assert outcomes == [("HouseholdRejected", ["policy_number_taken"])]
