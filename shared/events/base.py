"""The envelope every event travels in, and the base class of every event payload.

An event has two parts: the *payload* (a :class:`DomainEvent` subclass: what happened, in domain
words) and the *envelope* (who said it, when, which stream and position). Producers and services
send an :class:`EventMessage`; the event log returns :class:`RecordedEvent`, which adds the stream,
its version, the global position and when the log recorded it.

Event types are stable strings (``"HouseholdRegistered"``), never Python import paths: renaming
a module must not break history.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SerializeAsAny

# Identifiers that end up in subjects, stream ids and hashes: printable, no spaces or controls.
NAME_PATTERN = r"^[^\s\x00-\x1f\x7f]+$"
NAME_MAX_LENGTH = 200
Name = Annotated[str, Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN)]
# What producers name things by (households, townships, areas, plans, claims): services build stream
# ids and policy numbers from these ("subsidy-P2024-<township>-<household>"), which must stay Names,
# so a producer may send at most KEY_MAX_LENGTH characters (the published schemas say so, and
# ``registry.parse_message`` refuses longer ones). Events recorded before that limit, up to a
# Name's 200 characters, still read back: the models themselves accept them.
KEY_MAX_LENGTH = 80
PRODUCER_KEY = object()  # marks a Key field in its annotation (see ``registry.producer_keys``)
Key = Annotated[
    str,
    Field(min_length=1, max_length=NAME_MAX_LENGTH, pattern=NAME_PATTERN, json_schema_extra={"maxLength": KEY_MAX_LENGTH}),
    PRODUCER_KEY,
]
Fen = Annotated[int, Field(ge=0, le=10**13, description="amount in integer fen (分); 100 fen = 1 yuan")]
# An instant whose offset pushes it off the calendar (``9999-12-31T23:00-12:00`` is in the year
# 10000 in UTC) can be neither stored as UTC nor read as a date in China: refused at the contract,
# with its field named, rather than failing where the log or a service converts it. pydantic-core
# compares the instants themselves (offsets included), with a day to spare at each end.
Instant = Annotated[
    AwareDatetime,
    Field(ge=datetime(1, 1, 2, tzinfo=timezone.utc), lt=datetime(9999, 12, 31, tzinfo=timezone.utc)),
]


class FrozenModel(BaseModel):
    """Immutable, strict about unknown fields: a contract, not a bag of values."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=False)


class DomainEvent(FrozenModel):
    """Base of every event payload. Subclasses set ``event_type`` and ``schema_version``."""

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class EventMessage(FrozenModel):
    """An event as a producer or a service sends it (before the log gives it a place).

    Build one with :meth:`new`, or parse received bytes with ``registry.parse_message``, which
    also checks that the payload is the type the envelope names (a plain constructor does not).
    """

    event_id: uuid.UUID = Field(description="unique id; also sent as the NATS Nats-Msg-Id header")
    event_type: Name
    schema_version: int = Field(ge=1)
    occurred_at: Instant = Field(description="when it happened in the world (timezone-aware)")
    source: Name = Field(description="who said it: the producing system or service")
    correlation_id: uuid.UUID = Field(description="the conversation this event belongs to")
    causation_id: uuid.UUID | None = Field(default=None, description="the event that caused this one")
    payload: SerializeAsAny[DomainEvent] = Field(description="the event itself; its schema depends on event_type")

    @classmethod
    def new(
        cls,
        payload: DomainEvent,
        *,
        source: str,
        occurred_at: datetime | None = None,
        event_id: uuid.UUID | None = None,
        correlation_id: uuid.UUID | None = None,
        causation_id: uuid.UUID | None = None,
    ) -> EventMessage:
        """Wrap a payload in a fresh envelope (or a given ``event_id`` for deterministic ids)."""
        eid = event_id or uuid.uuid4()
        return EventMessage(
            event_id=eid,
            event_type=payload.event_type,
            schema_version=payload.schema_version,
            occurred_at=occurred_at or datetime.now(timezone.utc),
            source=source,
            correlation_id=correlation_id or eid,
            causation_id=causation_id,
            payload=payload,
        )


class RecordedEvent(EventMessage):
    """An event as the log holds it: its stream, version in that stream, global position and
    the time the log recorded it."""

    # What the log recorded reads back as it was recorded, whatever the input bounds of today.
    occurred_at: AwareDatetime
    stream_id: Name
    stream_version: int = Field(ge=1)
    position: int = Field(ge=1, description="global, gap-free order of the whole log")
    recorded_at: AwareDatetime


def unchecked_message(values: dict[str, Any], fields_set: set[str] | frozenset[str] | None = None) -> EventMessage:
    """An ``EventMessage`` of ``values`` (every field, each already validated), made without
    validating them again: ``model_construct`` without its look-ups of each field's alias and
    default, which these never need. ``values`` becomes the message's own (not copied).
    ``fields_set``: the fields that were given (default: all)."""
    message = EventMessage.__new__(EventMessage)
    object.__setattr__(message, "__dict__", values)
    object.__setattr__(message, "__pydantic_fields_set__", set(_ENVELOPE_FIELDS if fields_set is None else fields_set))
    object.__setattr__(message, "__pydantic_extra__", None)
    object.__setattr__(message, "__pydantic_private__", None)
    return message


_ENVELOPE_FIELDS = frozenset(EventMessage.model_fields)
