"""Product terms and the end of cover at death, through the services' handlers and their own
tables on the real databases: what one batch records, the next batch decides with."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from services.claims.handlers import ClaimsHandler
from services.claims.tables import metadata as claims_tables
from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata as enrollment_tables
from shared.events import EventMessage
from shared.events.claims import ClaimReported
from shared.events.consumer import Incoming, process_batch
from shared.events.inbox import metadata as inbox_tables
from shared.events.programme import ProductTermsPublished
from shared.events.store import EventStore
from shared.events.subjects import INBOUND_STREAMS, inbound_subject
from tests.integration.test_claims_waiting_for_policy import Log
from tests.unit.builders import death, medical, registration

T0 = datetime(2024, 3, 1, 1, 0, tzinfo=timezone.utc)
TERMS = ProductTermsPublished(programme_year=2024, product="100元版", premium_per_unit_fen=100_00,
                              death_disability_per_unit_fen=200_000_00, medical_limit_per_unit_fen=14_000_00,
                              deductible_fen=100_00, payment_ratio=Decimal("0.8"))


def from_county(payload, n: int) -> Incoming:  # type: ignore[no-untyped-def]
    message = EventMessage.new(payload, source="county", occurred_at=T0 + timedelta(minutes=n))
    return Incoming(subject=inbound_subject("county", message.event_type), body=message.model_dump_json().encode(),
                    headers={}, stream=INBOUND_STREAMS["county"], sequence=n)


async def recorded(store: EventStore, event_type: str) -> list:  # type: ignore[type-arg]
    return [e.payload async for batch in store.read_all(event_types=[event_type]) for e in batch]


async def test_a_policy_issued_in_a_later_batch_carries_the_terms_its_year_was_given(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    handler = EnrollmentHandler()

    await process_batch(store, handler, [from_county(TERMS, 1)])
    await process_batch(store, handler, [from_county(registration(), 2)])

    (policy,) = await recorded(store, "PolicyIssued")
    assert (policy.deductible_fen, policy.payment_ratio, policy.premium_fen) == (100_00, Decimal("0.8"), 100_00)
    (terms,) = await recorded(store, "ProductTermsPublished")
    assert terms == TERMS


async def test_claims_keep_the_policys_terms_and_the_date_of_death_between_batches(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables, claims_tables)
    await process_batch(store, EnrollmentHandler(), [from_county(TERMS, 1), from_county(registration(), 2)])
    (policy,) = await recorded(store, "PolicyIssued")
    head = policy.insured[0].resident_id
    log, handler = Log(), ClaimsHandler()
    accident = date(2024, 6, 10)
    unstated = medical(head, 10_000_00, social_insurance_fen=3_000_00, claim_id="C2", accident=accident,
                       reported=accident + timedelta(days=20), policy_number=policy.policy_number)
    unstated = unstated.model_copy(update={"deductible_fen": None, "payment_ratio": None})
    after_death = ClaimReported.model_validate(unstated.model_dump() | {"claim_id": "C3", "accident_date": accident + timedelta(days=5)})

    await process_batch(store, handler, [log(policy)[1]])
    await process_batch(store, handler, [log(death(head, claim_id="C1", accident=accident, died=accident + timedelta(days=2),
                                                   policy_number=policy.policy_number))[1]])
    await process_batch(store, handler, [log(unstated)[1]])
    await process_batch(store, handler, [log(after_death)[1]])

    paid = {p.claim_id: p.amount_fen for p in await recorded(store, "ClaimPaid")}
    assert paid["C2"] == 5_520_00  # (10,000 - 3,000 - 100) x 0.8 yuan: the policy's terms, before the death
    assert [(r.claim_id, r.reason) for r in await recorded(store, "ClaimRejected")] == [("C3", "cover_ended")]
