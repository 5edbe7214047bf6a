"""Producer-scoped event ids: what the log records an inbound event under.

A producer chooses its event ids, and docs/integration.md advises predictable ones (UUID v5 of
its own record). Recorded as sent, one producer could claim another's ids first: the log keeps an
event id once, so the other's real event would be taken for a re-send and never recorded. The log
therefore records an inbound event under an id scoped by the kind of producer that sent it:

    recorded event id = uuid5(PRODUCER_NAMESPACE, f"{kind}/{sent event id}")

``kind`` comes from the subject (``guanhuai.in.<kind>.<EventType>``), which only that kind of
producer may publish to, never from the message. A county's scoped credential (subjects
``guanhuai.in.county.<code>.<EventType>``, shared/events/subjects.py) is a producer of its own,
``county.<code>``: two counties of one deployment that choose the same ids (the same software,
the same UUID v5 names) never take each other's events for re-sends. An event first sent on the
unscoped subject and re-sent on a scoped one is a new event (a registration: the household is
already insured). The correlation id stays the producer's (or its
event id, when it sent none), so a producer finds its conversation in ``guanhuai.events.>``; it can
also compute the recorded id with :func:`recorded_id` (docs/integration.md).

Events recorded before this change carry the id as sent. A re-send of one of them is still a
duplicate: :func:`without_recorded_before_scoping` looks the sent id up among what the consumer
has handled (each inbound consumer takes one producer kind, so one producer's old ids are never
looked up for another's events).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from pydantic import Field
from sqlalchemy import Connection

from .base import EventMessage
from .inbox import already_processed

# uuid5(NAMESPACE_URL, "urn:guanhuai:producer-scoped-event-id"), fixed for ever: producers compute with it.
PRODUCER_NAMESPACE = uuid.UUID("f391b93e-dcc1-5c7f-8009-a50a7cd6a420")


def recorded_id(kind: str, sent_id: uuid.UUID | str) -> uuid.UUID:
    """The id the log records an event under that a ``kind`` producer (``county``, ``insurer``, or a
    scoped county ``county.350421``: shared/events/subjects.py, inbound_producer) sent with ``sent_id``."""
    return uuid.uuid5(PRODUCER_NAMESPACE, f"{kind}/{uuid.UUID(str(sent_id))}")


class InboundMessage(EventMessage):
    """An inbound event under its recorded (producer-scoped) id; ``sent_id`` is the id it was sent
    with, kept beside it for the look-up of events recorded before ids were scoped (never stored)."""

    sent_id: uuid.UUID = Field(exclude=True)
    # Who sent it, as its subject says (``county``, ``county.350421``); never stored with the event.
    producer: str = Field(default="", exclude=True)


def received_from(kind: str, event: EventMessage) -> InboundMessage:
    """``event`` as sent by a ``kind`` producer (``county.350421``: a scoped one), under its
    recorded id. Its fields are validated already (the parse), so they are not validated again."""
    fields = dict(event)
    fields.update(event_id=recorded_id(kind, event.event_id), sent_id=event.event_id, producer=kind)
    return InboundMessage.model_construct(_fields_set=set(event.model_fields_set) | {"sent_id", "producer"}, **fields)


def without_recorded_before_scoping(conn: Connection, consumer: str,
                                          events: Sequence[EventMessage]) -> list[EventMessage]:
    """``events`` without those that ``consumer`` handled under the id as sent, before ids were
    scoped (a producer's re-send of an event recorded then)."""
    sent = [str(e.sent_id) for e in events if isinstance(e, InboundMessage)]
    if not sent:
        return list(events)
    handled = already_processed(conn, consumer, sent)
    if not handled:
        return list(events)
    return [e for e in events if not (isinstance(e, InboundMessage) and str(e.sent_id) in handled)]
