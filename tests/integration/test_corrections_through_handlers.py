"""Corrections as events, through the real handlers on SQLite and PostgreSQL: the county's
HouseholdCorrected and PolicyCancellationRequested through enrollment, the outcomes through claims,
and the reports (from the log, now and as known before the correction)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import select

from services.claims.handlers import CONSUMES as CLAIMS_CONSUMES
from services.claims.handlers import ClaimsHandler, ClaimsIntakeHandler
from services.claims.tables import metadata as claims_tables
from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import insured_persons
from services.enrollment.tables import metadata as enrollment_tables
from services.reporting.handlers import ReportingHandler
from services.reporting.service import compute_report
from services.reporting.tables import metadata as reporting_tables
from shared.domain.calendar import CST
from shared.events import EventMessage, RecordedEvent
from shared.events.claims import ClaimKind, ClaimReported
from shared.events.consumer import Incoming, process_batch
from shared.events.enrollment import HouseholdCorrected, PolicyCancellationRequested
from shared.events.inbox import metadata as inbox_tables
from shared.events.relay import published_body
from shared.events.store import EventStore
from shared.events.subjects import EVENTS_STREAM, event_subject, inbound_stream, inbound_subject
from tests.unit.builders import HEAD_BIRTH, family, member, registration

REGISTERED_AT = datetime(2024, 3, 1, 10, 0, tzinfo=CST)  # paid and issued 1 March: cover from 2 March
BEFORE_COVER = datetime(2024, 3, 1, 16, 0, tzinfo=CST)
AFTER_START = datetime(2024, 4, 2, 10, 0, tzinfo=CST)
POLICY = "P2024-chengguan-H1"


class Programme:
    """The county, enrollment, claims and the insurer around one log, handler by handler."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.sequence = 0
        self.relayed = 0  # the log position claims has seen up to

    async def start(self) -> Programme:
        await self.store.create_schema(inbox_tables, enrollment_tables, claims_tables)
        return self

    def _incoming(self, kind: str, event: EventMessage) -> Incoming:
        self.sequence += 1
        return Incoming(subject=inbound_subject(kind, event.event_type), body=event.model_dump_json().encode(),
                        headers={"Nats-Msg-Id": str(event.event_id)}, stream=inbound_stream(kind), sequence=self.sequence)

    async def county(self, *events: EventMessage) -> None:
        result = await process_batch(self.store, EnrollmentHandler(), [self._incoming("county", e) for e in events])
        assert result.handled == len(events) and result.dead_lettered == 0
        await self.relay()

    async def insurer(self, event: EventMessage) -> RecordedEvent:
        assert (await process_batch(self.store, ClaimsIntakeHandler(), [self._incoming("insurer", event)])).handled == 1
        await self.relay()
        return (await self.outcomes("claim-" + event.payload.claim_id))[-1]  # type: ignore[attr-defined]

    async def relay(self) -> None:
        """What the relay would publish to claims: the recorded events it consumes, in log order."""
        new = [e async for batch in self.store.read_all(self.relayed) for e in batch]
        if not new:
            return
        self.relayed = new[-1].position
        wanted = [Incoming(subject=event_subject(e.event_type), body=e.model_dump_json().encode(),
                           headers={"Nats-Msg-Id": str(e.event_id)}, stream=EVENTS_STREAM, sequence=e.position)
                  for e in new if e.event_type in CLAIMS_CONSUMES]
        if wanted:
            assert (await process_batch(self.store, ClaimsHandler(), wanted)).dead_lettered == 0

    async def outcomes(self, stream: str) -> list[RecordedEvent]:
        return [e for e in await self.store.read_stream(stream) if e.source != "county-test" and e.source != "insurer-test"]

    async def insured_ids(self, year: int = 2024) -> set[str]:
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(insured_persons.c.resident_id).where(insured_persons.c.programme_year == year))
            return {r[0] for r in rows}


def sent(payload, at: datetime = REGISTERED_AT) -> EventMessage:  # type: ignore[no-untyped-def]
    return EventMessage.new(payload, source="county-test", occurred_at=at)


def correction(of: EventMessage, *members, at: datetime = AFTER_START, **changes) -> EventMessage:  # type: ignore[no-untyped-def]
    return sent(HouseholdCorrected(**registration(*members, **changes).model_dump(), corrects=of.event_id), at)


def medical_claim(claim_id: str, resident_id: str) -> EventMessage:
    accident = date(2024, 5, 1)
    return EventMessage.new(ClaimReported(
        claim_id=claim_id, policy_number=POLICY, resident_id=resident_id, accident_date=accident,
        reported_on=accident + timedelta(days=2), kind=ClaimKind.medical, expenses_fen=500_000,
        social_insurance_paid_fen=200_000, deductible_fen=10_000, payment_ratio="0.8"),
        source="insurer-test", occurred_at=datetime(2024, 5, 3, 9, tzinfo=CST))


async def test_an_id_correction_after_cover_starts_lets_claims_be_paid_under_the_corrected_id(store: EventStore) -> None:
    programme = await Programme(store).start()
    registered = sent(registration())
    await programme.county(registered)
    head, wife, kid = family()
    right_head = member(HEAD_BIRTH, 12)

    await programme.county(correction(registered, right_head, wife, kid))

    policy, amended = await programme.outcomes("household-2024-H1")
    assert (policy.event_type, amended.event_type) == ("PolicyIssued", "PolicyAmended")
    assert amended.payload.policy_number == POLICY and amended.payload.cover_start == policy.payload.cover_start
    assert await programme.insured_ids() == {right_head.resident_id, wife.resident_id, kid.resident_id}
    paid = await programme.insurer(medical_claim("C1", right_head.resident_id))
    assert paid.event_type == "ClaimPaid" and paid.payload.amount_fen == 232_000
    refused = await programme.insurer(medical_claim("C2", head.resident_id))
    assert (refused.event_type, refused.payload.reason) == ("ClaimRejected", "not_insured_on_policy")


async def test_what_was_paid_before_an_id_correction_still_counts_against_the_limits(store: EventStore) -> None:
    programme = await Programme(store).start()
    registered = sent(registration())
    await programme.county(registered)
    head, wife, kid = family()
    assert (await programme.insurer(medical_claim("C1", head.resident_id))).payload.amount_fen == 232_000

    right_head = member(HEAD_BIRTH, 12)
    await programme.county(correction(registered, right_head, wife, kid))
    big = medical_claim("C2", right_head.resident_id).payload.model_copy(update={"expenses_fen": 2_000_000_00})

    paid = await programme.insurer(EventMessage.new(big, source="insurer-test", occurred_at=datetime(2024, 6, 1, tzinfo=CST)))

    assert paid.payload.amount_fen == 14_000_00 - 232_000  # the household's limit, less what it used before


async def test_a_wrong_township_correction_moves_the_policy_and_a_report_known_before_shows_the_old_figures(
        store: EventStore) -> None:
    programme = await Programme(store).start()
    registered = sent(registration())
    await programme.county(registered)
    known_before = datetime.now(timezone.utc)

    await programme.county(correction(registered, township="xuefeng", village=None))

    def figures(report) -> dict[str, tuple[int, int, int]]:  # type: ignore[no-untyped-def]
        return {r.figures.township: (r.figures.policies, r.figures.insured_persons, r.figures.premium_fen)
                for r in report.rows if r.figures.policies or r.figures.premium_fen}

    before, _ = await compute_report(store, 2024, until_recorded=known_before)
    now, _ = await compute_report(store, 2024, from_log=True)
    assert figures(before) == {"chengguan": (1, 3, 100_00)}
    assert figures(now) == {"xuefeng": (1, 3, 100_00)}
    assert now.total.figures.policies == 1 and now.total.figures.registrations == 1  # moved, not counted twice
    assert [m for m in now.monthly if m["policies"]] == [{"month": 3, "policies": 1, "premium_fen": 100_00,
                                                          "claims_paid_fen": 0}]
    assert len([e async for batch in store.read_all(event_types=["PolicyIssued"]) for e in batch]) == 1  # kept
    assert figures(await live_report(store)) == figures(now)  # the live read model, from the published events


async def live_report(store: EventStore):  # type: ignore[no-untyped-def]
    """The report from the read model the live projection builds of the published events."""
    await store.create_schema(reporting_tables)
    rows = [row async for page in store.read_rows(0) for row in page]
    messages = [Incoming(subject=event_subject(row[4]), body=published_body(row), headers={"Nats-Msg-Id": row[1]},
                         stream=EVENTS_STREAM, sequence=row[0]) for row in rows]
    assert (await process_batch(store, ReportingHandler(store), messages)).dead_lettered == 0
    report, warning = await compute_report(store, 2024)
    assert warning is None
    return report


async def test_a_policy_cancelled_before_cover_starts_counts_out_of_reports_and_takes_no_claims(store: EventStore) -> None:
    programme = await Programme(store).start()
    await programme.county(sent(registration()))
    known_before = datetime.now(timezone.utc)

    await programme.county(sent(PolicyCancellationRequested(household_id="H1", programme_year=2024,
                                                            reason="registered_in_error"), BEFORE_COVER))

    (_, cancelled) = await programme.outcomes("household-2024-H1")
    assert (cancelled.event_type, cancelled.payload.reason) == ("PolicyCancelled", "registered_in_error")
    before, _ = await compute_report(store, 2024, until_recorded=known_before)
    now, _ = await compute_report(store, 2024, from_log=True)
    assert (before.total.figures.policies, before.total.figures.premium_fen) == (1, 100_00)
    assert (now.total.figures.policies, now.total.figures.insured_persons, now.total.figures.premium_fen) == (0, 0, 0)
    assert (await live_report(store)).total.figures.policies == 0
    claim = await programme.insurer(medical_claim("C1", family()[0].resident_id))
    assert (claim.event_type, claim.payload.reason) == ("ClaimRejected", "not_insured_on_policy")
    assert await programme.insured_ids() == set()  # free to be insured on another household's policy
    await programme.county(sent(registration(household_id="H2")))
    assert (await programme.outcomes("household-2024-H2"))[0].event_type == "PolicyIssued"


async def test_a_correction_in_the_same_batch_as_its_registration_amends_the_policy_just_issued(store: EventStore) -> None:
    programme = await Programme(store).start()
    registered = sent(registration())
    head, wife, kid = family()
    right_head = member(HEAD_BIRTH, 12)

    await programme.county(registered, correction(registered, right_head, wife, kid, at=BEFORE_COVER))

    assert [e.event_type for e in await programme.outcomes("household-2024-H1")] == ["PolicyIssued", "PolicyAmended"]
    assert await programme.insured_ids() == {right_head.resident_id, wife.resident_id, kid.resident_id}


async def test_a_correction_naming_an_unknown_event_is_refused_in_the_households_stream(store: EventStore) -> None:
    programme = await Programme(store).start()
    await programme.county(sent(registration()))
    stray = sent(registration(household_id="H9"))  # never sent

    await programme.county(correction(stray, township="xuefeng"))

    refused = (await programme.outcomes("household-2024-H1"))[-1]
    assert (refused.event_type, refused.payload.reasons) == ("CorrectionRefused", ["correction_target_unknown"])
    report, _ = await compute_report(store, 2024, from_log=True)
    assert {r.figures.township for r in report.rows if r.figures.policies} == {"chengguan"}
