"""A renewal is checked against the previous programme year in enrollment's own tables, through the
real handler on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date, datetime

from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata as enrollment_tables
from shared.domain.calendar import CST
from shared.events import EventMessage
from shared.events.consumer import Incoming, process_batch
from shared.events.enrollment import ExcludedMember
from shared.events.inbox import metadata as inbox_tables
from shared.events.store import EventStore
from shared.events.subjects import inbound_stream, inbound_subject
from tests.unit.builders import member, registration


def incoming(event: EventMessage, sequence: int) -> Incoming:
    return Incoming(subject=inbound_subject("county", event.event_type), body=event.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": str(event.event_id)}, stream=inbound_stream("county"), sequence=sequence)


def sent(reg) -> EventMessage:  # type: ignore[no-untyped-def]
    return EventMessage.new(reg, source="county-test", occurred_at=datetime(reg.programme_year, 3, 1, 9, tzinfo=CST))


async def test_a_member_of_66_renews_only_if_insured_the_previous_programme_year(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    renewing = member(date(1958, 1, 1), 13)  # 65 on 2 March 2023 (a new entrant then), 66 on 2 March 2024
    newcomer = member(date(1958, 1, 2), 14)  # 66 on 2 March 2024, never insured
    head = member(date(1984, 1, 1))
    await process_batch(store, EnrollmentHandler(), [incoming(sent(registration(
        renewing, household_id="H1", year=2023, paid_on=date(2023, 3, 1))), 1)])

    await process_batch(store, EnrollmentHandler(), [
        incoming(sent(registration(renewing, household_id="H1", renewal=True)), 2),
        incoming(sent(registration(head, newcomer, household_id="H2", renewal=True)), 3)])

    renewed = (await store.read_stream("household-2024-H1"))[-1]
    claimed = (await store.read_stream("household-2024-H2"))[-1]
    assert renewed.event_type == "PolicyIssued" and [p.resident_id for p in renewed.payload.insured] == [renewing.resident_id]
    assert claimed.payload.excluded == [ExcludedMember(resident_id=newcomer.resident_id, reason="renewal_not_found")]
