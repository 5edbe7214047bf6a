"""Bad input found by fuzzing (issue #6), against the real databases: the consumer core stores every
dead letter whatever the sender put in its headers and subject, and a claim reported twice ends as a
recorded rejection."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from services.claims.handlers import ClaimsHandler
from services.claims.tables import metadata as claims_tables
from services.enrollment.handlers import EnrollmentHandler
from shared.events import EventMessage, RecordedEvent
from shared.events.consumer import Incoming, process_batch
from shared.events.inbox import dead_letters
from shared.events.inbox import metadata as inbox_tables
from shared.events.store import EventStore
from shared.events.producers import recorded_id
from shared.events.subjects import EVENTS_STREAM, event_subject, inbound_stream
from tests.support.programme import households, unknown_policy_claim


async def test_a_dead_letter_is_stored_whatever_the_length_of_the_senders_id_and_subject(store: EventStore) -> None:
    await store.create_schema(inbox_tables)
    subject = "guanhuai.in.county." + "H" * 400
    message = Incoming(subject=subject, body=b"\xff not json", headers={"Nats-Msg-Id": "m" * 300, "X-\ud800": "\udcff"},
                       stream=inbound_stream("county"), sequence=1)
    result = await process_batch(store, EnrollmentHandler(), [message])
    assert result.dead_lettered == 1 and result.failed == []
    with store.engine.connect() as conn:
        row = (conn.execute(select(dead_letters))).one()
    assert row.reason == "not_json" and row.body == b"\xff not json"
    assert row.event_id is None  # 300 characters are no event id of ours
    assert row.subject == subject[:300]


class FailingEnrollment(EnrollmentHandler):
    """Enrollment with a rule nobody foresaw: it fails whether it decides before the lock or under it."""

    def prepare(self, conn, events):  # type: ignore[no-untyped-def]
        raise ValueError("a rule nobody foresaw")

    def handle(self, tx, events) -> None:  # type: ignore[no-untyped-def]
        raise ValueError("a rule nobody foresaw")


async def test_an_input_whose_handler_fails_on_its_last_delivery_is_counted_as_one_dead_letter(store: EventStore) -> None:
    await store.create_schema(inbox_tables)
    (registration,) = households(1, seed=3)
    message = Incoming(subject="guanhuai.in.county.HouseholdRegistered", body=registration.model_dump_json().encode(),
                       headers={}, stream=inbound_stream("county"), sequence=3, delivered=5)
    result = await process_batch(store, FailingEnrollment(), [message], max_deliver=5)
    assert result.dead_lettered == 1 and result.handled == 0 and result.failed == []
    with store.engine.connect() as conn:
        row = (conn.execute(select(dead_letters))).one()
    assert row.reason == "handler_error" and "a rule nobody foresaw" in row.detail
    assert row.event_id == str(recorded_id("county", registration.event_id))  # the id the log would have given it


def recorded(message: EventMessage, position: int) -> Incoming:
    event = RecordedEvent(**dict(message), stream_id=f"claim-{message.payload.claim_id}", stream_version=position,  # type: ignore[attr-defined]
                          position=position, recorded_at=datetime.now(timezone.utc))
    return Incoming(subject=event_subject(message.event_type), body=event.model_dump_json().encode(), headers={},
                    stream=EVENTS_STREAM, sequence=position)


async def test_a_claim_reported_again_under_a_new_event_id_is_rejected_as_a_duplicate_claim(store: EventStore) -> None:
    await store.create_schema(inbox_tables, claims_tables)
    first = unknown_policy_claim("C-twice")
    again = unknown_policy_claim("C-twice")
    result = await process_batch(store, ClaimsHandler(), [recorded(first, 1), recorded(again, 2)], max_deliver=1)
    log = [e async for batch in store.read_all() for e in batch]
    assert result.dead_lettered == 0
    # The first waits for its policy (ClaimDeferred); the second is a duplicate at once.
    assert [(e.event_type, e.payload.reason) for e in log if e.event_type in ("ClaimRejected", "ClaimDeferred")] == [
        ("ClaimDeferred", "policy_not_yet_known"), ("ClaimRejected", "duplicate_claim")]
