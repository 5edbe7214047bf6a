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
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from collections.abc import Callable
from typing import Annotated, Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SerializeAsAny, WithJsonSchema

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


@dataclass(frozen=True)
class AsSent:
    """Marks a field whose text a producer must send matching ``pattern`` (a JSON string), while
    events recorded before that rule still read back as the model takes them: ``registry.parse_message``
    checks it on what producers send, and the published schemas say it (``WithJsonSchema``)."""

    pattern: str
    what: str  # for the error message: what to send instead


# A ratio is sent as a decimal string, never a JSON number: a float cannot say 0.8 exactly, and
# equal numbers would be stored as different text (see ``registry._has_numbers``).
RATIO_PATTERN = r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$"
Ratio = Annotated[
    Decimal,
    Field(ge=0, le=1, max_digits=6, decimal_places=4),
    WithJsonSchema({"type": "string", "pattern": RATIO_PATTERN, "examples": ["0.8", "1"],
                    "description": 'a decimal string from "0" to "1", at most 4 decimal places (a JSON number is refused)'}),
    AsSent(RATIO_PATTERN, 'a decimal string such as "0.8" (from "0" to "1", at most 4 decimal places)'),
]
# An instant whose offset pushes it off the calendar (``9999-12-31T23:00-12:00`` is in the year
# 10000 in UTC) can be neither stored as UTC nor read as a date in China: refused at the contract,
# with its field named, rather than failing where the log or a service converts it. pydantic-core
# compares the instants themselves (offsets included), with a day to spare at each end.
Instant = Annotated[
    AwareDatetime,
    Field(ge=datetime(1, 1, 2, tzinfo=timezone.utc), lt=datetime(9999, 12, 31, tzinfo=timezone.utc)),
]


def one_variant_per(field: str, rules: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` that publishes a model as a discriminated union (``oneOf``): one object
    schema per value of ``field``, with the fields that value needs (present, not null) and the ones
    it must not carry (left out or null). ``rules``: value -> (needs, forbids), as the model's own
    validator enforces them (tests/unit/test_schema_acceptance.py checks the two agree)."""

    def publish(schema: dict[str, Any]) -> None:
        properties, required = schema.pop("properties"), schema.pop("required", [])
        closed = schema.pop("additionalProperties", None) is False
        variants = []
        for value, (needs, forbids) in rules.items():
            props = dict(properties)
            props[field] = {"const": value, "type": "string"}
            for name in needs:
                props[name] = _not_null(properties[name])
                props[name].pop("default", None)
            for name in forbids:
                props[name] = {"type": "null", "description": f"not for {field} {value}: leave it out (or null)"}
            variant: dict[str, Any] = {"title": f"{field} {value}", "type": "object", "properties": props,
                                       "required": [*required, *[n for n in needs if n not in required]]}
            if closed:
                variant["additionalProperties"] = False
            variants.append(variant)
        schema["oneOf"] = variants

    return publish


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A property's schema without its null branch (pydantic writes ``X | None`` as anyOf[X, null])."""
    branches = [b for b in schema.get("anyOf", []) if b != {"type": "null"}]
    if len(branches) != 1:
        return dict(schema)
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**branches[0], **rest}


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


class SentMessage(EventMessage):
    """The envelope as a producer may send it, for the published schemas: ``correlation_id`` may be
    left out or null (``registry.parse_message`` then takes the event id: a conversation starts with
    its first event)."""

    correlation_id: uuid.UUID | None = Field(  # type: ignore[assignment]
        default=None, description="the conversation this event belongs to; left out or null: the event id")


class RecordedEvent(EventMessage):
    """An event as the log holds it: its stream, version in that stream, global position and
    the time the log recorded it."""

    # What the log recorded reads back as it was recorded, whatever the input bounds of today.
    occurred_at: AwareDatetime
    stream_id: Name
    stream_version: int = Field(ge=1)
    position: int = Field(ge=1, description="global, gap-free order of the whole log")
    recorded_at: AwareDatetime


def unchecked_message(values: dict[str, Any]) -> EventMessage:
    """An ``EventMessage`` of ``values`` (each field already validated), made without validating
    them again (pydantic's ``model_construct``): an outcome keeps the time of a cause read back
    from the log even where that time is outside the bounds producers are held to today."""
    return EventMessage.model_construct(**values)
