"""One producer cannot erase another's events (issue #17, break 4): not in JetStream's duplicate
window (one inbound stream per producer kind), and not in the log (the recorded event id is scoped
by the producer kind); and what was recorded before ids were scoped is still a duplicate when sent
again."""

from __future__ import annotations

import uuid
from pathlib import Path

import nats
import pytest
from sqlalchemy import insert, select

from guanhuai.embedded import NatsServer
from services.claims.handlers import ClaimsIntakeHandler
from services.claims.tables import metadata as claims_tables
from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata as enrollment_tables
from shared.events import EventMessage
from shared.events.broker import InboundStreamUpgrade, ensure_streams
from shared.events.consumer import Incoming, process_batch
from shared.events.inbox import dead_letters, processed_messages
from shared.events.inbox import metadata as inbox_tables
from shared.events.producers import recorded_id
from shared.events.store import EventStore
from shared.events.subjects import inbound_stream, inbound_subject
from tests.support.probes import probe
from tests.support.programme import households, medical


def incoming(kind: str, event: EventMessage, sequence: int = 1) -> Incoming:
    return Incoming(subject=inbound_subject(kind, event.event_type), body=event.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": str(event.event_id)}, stream=inbound_stream(kind), sequence=sequence)


def under(event: EventMessage, event_id: uuid.UUID) -> EventMessage:
    return event.model_copy(update={"event_id": event_id, "correlation_id": event_id})


async def pulled(js, kind: str) -> list[Incoming]:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe(f"guanhuai.in.{kind}.>", durable=f"test-{kind}", stream=inbound_stream(kind))
    out = []
    try:
        messages = await sub.fetch(100, timeout=3)
    except nats.errors.TimeoutError:  # none stored
        messages = []
    for m in messages:
        out.append(Incoming(subject=m.subject, body=m.data, headers=dict(m.headers or {}), stream=inbound_stream(kind),
                            sequence=m.metadata.sequence.stream))
        await m.ack()
    return out


async def test_a_county_sending_the_insurers_claim_ids_first_erases_none_of_the_insurers_claims(
        store: EventStore, tmp_path: Path) -> None:
    await store.create_schema(inbox_tables, enrollment_tables, claims_tables)
    registrations = households(5, seed=17)
    claims = [medical(reg, f"CL-{i}") for i, reg in enumerate(registrations)]
    # The county's junk: registrations of its own, sent under the insurer's (predictable) claim ids.
    junk = [under(reg, claim.event_id) for reg, claim in zip(households(5, seed=18), claims, strict=True)]
    with NatsServer(tmp_path / "nats") as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream(timeout=5)
            await ensure_streams(js)
            for message in junk:
                await js.publish(inbound_subject("county", "HouseholdRegistered"), message.model_dump_json().encode(),
                                 headers={"Nats-Msg-Id": str(message.event_id)})
            acks = [await js.publish(inbound_subject("insurer", "ClaimReported"), c.model_dump_json().encode(),
                                     headers={"Nats-Msg-Id": str(c.event_id)}) for c in claims]
            county_in, insurer_in = await pulled(js, "county"), await pulled(js, "insurer")
        finally:
            await nc.close()
    # The county's words are handled first: its junk is in the log before the insurer's claims come.
    await process_batch(store, EnrollmentHandler(), county_in)
    await process_batch(store, ClaimsIntakeHandler(), insurer_in)

    log = [e async for batch in store.read_all() for e in batch]
    recorded_claims = {e.payload.claim_id for e in log if e.event_type == "ClaimReported"}  # type: ignore[attr-defined]
    lost = len(claims) - len(recorded_claims)
    probe("producer_id_collision", sent=len(claims), recorded=len(recorded_claims), lost=lost)
    assert not any(a.duplicate for a in acks)
    assert recorded_claims == {f"CL-{i}" for i in range(5)}
    assert sum(e.event_type == "HouseholdRegistered" for e in log) == 5  # the junk is a county's households, no claim
    # Each recorded under its producer-scoped id, in its sender's conversation.
    by_id = {e.event_id: e for e in log}
    for claim in claims:
        recorded = by_id[recorded_id("insurer", claim.event_id)]
        assert recorded.event_type == "ClaimReported" and recorded.correlation_id == claim.event_id


async def test_a_resend_of_an_event_recorded_before_ids_were_scoped_is_still_a_duplicate(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables, claims_tables)
    (registration,) = households(1, seed=19)
    claim = medical(registration, "CL-OLD")
    # As the earlier version recorded them: under the ids as sent, each in its consumer's inbox.
    with store.transaction() as tx:
        from shared.events.store import StreamAppend

        tx.append_streams([StreamAppend(f"household-2024-{registration.payload.household_id}", [registration]),  # type: ignore[attr-defined]
                                 StreamAppend("claim-CL-OLD", [claim])])
        tx.connection.execute(insert(processed_messages), [
            {"consumer": "enrollment-county-v1", "message_id": str(registration.event_id), "processed_at": registration.occurred_at},
            {"consumer": "claims-insurer-v1", "message_id": str(claim.event_id), "processed_at": claim.occurred_at}])
    await process_batch(store, EnrollmentHandler(), [incoming("county", registration)])
    await process_batch(store, ClaimsIntakeHandler(), [incoming("insurer", claim)])
    log = [e async for batch in store.read_all() for e in batch]
    assert [e.event_type for e in log] == ["HouseholdRegistered", "ClaimReported"]  # nothing recorded again

    # An id the county used before the change is no duplicate for the insurer (the look-up is by consumer).
    other = under(medical(registration, "CL-NEW"), registration.event_id)
    await process_batch(store, ClaimsIntakeHandler(), [incoming("insurer", other)])
    log = [e async for batch in store.read_all() for e in batch]
    assert [e.event_type for e in log] == ["HouseholdRegistered", "ClaimReported", "ClaimReported"]
    with store.engine.connect() as conn:
        assert (conn.execute(select(dead_letters))).all() == []


async def test_services_refuse_to_start_while_the_single_inbound_stream_of_an_earlier_version_exists(
        tmp_path: Path) -> None:
    from nats.js.api import StreamConfig

    with NatsServer(tmp_path / "nats") as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream(timeout=5)
            await js.add_stream(StreamConfig(name="GUANHUAI_IN", subjects=["guanhuai.in.county.>", "guanhuai.in.insurer.>"]))
            with pytest.raises(InboundStreamUpgrade) as refused:
                await ensure_streams(js)
            assert "\n" not in str(refused.value) and "GUANHUAI_IN" in str(refused.value)
            assert "docs/operations.md" in str(refused.value)
            await js.delete_stream("GUANHUAI_IN")  # the operator, once it is drained
            await ensure_streams(js)
            assert (await js.stream_info("GUANHUAI_IN_COUNTY")).config.subjects == ["guanhuai.in.county.>"]
        finally:
            await nc.close()
