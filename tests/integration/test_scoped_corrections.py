"""Each county sees only its own (issue #21), corrections and cancellations through the real
enrollment handler (SQLite and PostgreSQL): a county's scoped credential may not correct or cancel
another county's policy (``area_not_permitted``), in a batch of its own too, and corrects its own
naming the registration by the id it sent; the province's unscoped credential may do either."""

from __future__ import annotations

import uuid
from datetime import datetime

from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata as enrollment_tables
from shared.domain.calendar import CST
from shared.events import EventMessage
from shared.events.consumer import Incoming, process_batch
from shared.events.enrollment import HouseholdCorrected, PolicyCancellationRequested
from shared.events.inbox import metadata as inbox_tables
from shared.events.programme import AreaLevel, AreaRegistered
from shared.events.store import EventStore
from shared.events.subjects import inbound_subject, scoped_inbound_subject
from tests.unit.builders import member, registration

REGISTERED_AT = datetime(2024, 3, 1, 10, 0, tzinfo=CST)  # cover from 2 March
BEFORE_COVER = datetime(2024, 3, 1, 16, 0, tzinfo=CST)
sequence = iter(range(1, 10**6))


def sent(event: EventMessage, county: str | None) -> Incoming:
    subject = (scoped_inbound_subject("county", county, event.event_type) if county
               else inbound_subject("county", event.event_type))
    return Incoming(subject=subject, body=event.model_dump_json().encode(), headers={"Nats-Msg-Id": str(event.event_id)},
                    stream="GUANHUAI_IN_COUNTY", sequence=next(sequence))


async def county(store: EventStore, sender: str | None, *events: EventMessage) -> None:
    result = await process_batch(store, EnrollmentHandler(), [sent(e, sender) for e in events])
    assert result.handled == len(events) and result.dead_lettered == 0


async def outcomes(store: EventStore, household: str) -> list[tuple[str, list[str]]]:
    return [(e.event_type, list(getattr(e.payload, "reasons", [])))
            async for batch in store.read_all() for e in batch
            if getattr(e.payload, "household_id", None) == household and e.source == "enrollment"]


def area(code: str, level: AreaLevel, parent: str | None = None) -> EventMessage:
    return EventMessage.new(AreaRegistered(code=code, name=code, level=level, parent_code=parent), source="province")


async def test_a_county_may_not_correct_or_cancel_another_countys_policy(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    await county(store, None, area("mingxi", AreaLevel.county), area("hongta", AreaLevel.county),
                 area("mx-cg", AreaLevel.township, "mingxi"), area("ht-yx", AreaLevel.township, "hongta"))
    reg = registration(member(sequence=301), household_id="HT-1", township="ht-yx", village=None)
    first = EventMessage.new(reg, source="hongta", occurred_at=REGISTERED_AT)
    await county(store, "hongta", first)
    assert await outcomes(store, "HT-1") == [("PolicyIssued", [])]

    # Mingxi, alone in a batch (no registration in it): neither the cancellation nor a correction
    # moving the household into a Mingxi township is taken.
    cancel = PolicyCancellationRequested(household_id="HT-1", programme_year=reg.programme_year, reason="registered_in_error")
    await county(store, "mingxi", EventMessage.new(cancel, source="mingxi", occurred_at=BEFORE_COVER))
    moved = HouseholdCorrected(**reg.model_dump() | {"township": "mx-cg"}, corrects=first.event_id)
    await county(store, "mingxi", EventMessage.new(moved, source="mingxi", occurred_at=BEFORE_COVER))
    assert (await outcomes(store, "HT-1"))[1:] == [("CorrectionRefused", ["area_not_permitted"])] * 2

    # Hongta corrects its own, naming the registration by the id it sent it under.
    renamed = HouseholdCorrected(**reg.model_dump() | {"units": 2}, corrects=first.event_id)
    await county(store, "hongta", EventMessage.new(renamed, source="hongta", occurred_at=BEFORE_COVER))
    assert (await outcomes(store, "HT-1"))[3][0] == "PolicyAmended"
    # And cancels it, in a batch of its own (its areas read for the check all the same).
    await county(store, "hongta", EventMessage.new(cancel, source="hongta", occurred_at=BEFORE_COVER))
    assert (await outcomes(store, "HT-1"))[4][0] == "PolicyCancelled"


async def test_the_provinces_unscoped_credential_may_cancel_any_countys_policy(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    await county(store, None, area("hongta", AreaLevel.county), area("ht-yx", AreaLevel.township, "hongta"))
    reg = registration(member(sequence=302), household_id="HT-2", township="ht-yx", village=None)
    await county(store, "hongta", EventMessage.new(reg, source="hongta", occurred_at=REGISTERED_AT))
    cancel = PolicyCancellationRequested(household_id="HT-2", programme_year=reg.programme_year, reason="registered_in_error")
    await county(store, None, EventMessage.new(cancel, source="province", occurred_at=BEFORE_COVER, event_id=uuid.uuid4()))
    assert [t for t, _ in await outcomes(store, "HT-2")] == ["PolicyIssued", "PolicyCancelled"]


async def test_a_scoped_county_cannot_register_areas_set_targets_or_terms(store: EventStore) -> None:
    """What reaches every county's households comes from the unscoped credential: on a county's
    subject (which its NATS user may not publish on anyway) enrollment dead-letters it unrecorded."""
    await store.create_schema(inbox_tables, enrollment_tables)
    await county(store, None, area("mingxi", AreaLevel.county), area("hongta", AreaLevel.county),
                 area("mx-cg", AreaLevel.township, "mingxi"), area("ht-yx", AreaLevel.township, "hongta"))
    before = len([e async for batch in store.read_all() for e in batch])
    takeover = area("ht-yx", AreaLevel.township, "mingxi")  # another county's township, put under Mingxi
    own = EventMessage.new(registration(member(sequence=303), household_id="MX-1", township="mx-cg", village=None),
                           source="mingxi", occurred_at=REGISTERED_AT)
    result = await process_batch(store, EnrollmentHandler(), [sent(takeover, "mingxi"), sent(own, "mingxi")])
    assert (result.handled, result.dead_lettered) == (1, 1)  # its household is taken, the area is not
    recorded = [e async for batch in store.read_all() for e in batch][before:]
    assert [e.event_type for e in recorded] == ["HouseholdRegistered", "PolicyIssued"]
