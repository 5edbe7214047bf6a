"""Parse any stored or received event by its type and schema version.

Every event type is registered once with its current payload class; older schema versions are
brought up to date by upcasters (plain functions from one version's payload dict to the next),
so history written years ago is read with today's models.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Annotated, Any, get_args, get_origin

from pydantic import ConfigDict, Field, Json, StrictInt, ValidationError, create_model

from .base import KEY_MAX_LENGTH, PRODUCER_KEY, AsSent, DomainEvent, EventMessage, RecordedEvent, SentMessage

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
# The columns of a stored row, in the order ``EventRegistry.parse_recorded_rows`` reads them.
ROW_FIELDS = (
    "position", "event_id", "stream_id", "stream_version", "event_type", "schema_version", "occurred_at",
    "recorded_at", "source", "correlation_id", "causation_id", "payload",
)


class EventContractError(ValueError):
    """Input that does not fit the event contracts. ``code`` is a stable reason code and
    ``fields`` the dotted paths of the offending fields (empty when the input is not even JSON)."""

    def __init__(self, code: str, message: str, fields: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.fields = tuple(fields)


def _not_json(exc: ValidationError) -> bool:
    return any(err["type"] == "json_invalid" for err in exc.errors(include_url=False))


def _load_json(data: bytes | str, what: str, fields: Iterable[str] = ()) -> Any:
    """``json.loads`` with every way hostile text makes it fail as a contract error: not JSON, not
    UTF-8, an integer too long to read (a ``ValueError`` that is no ``JSONDecodeError``), or nesting
    deeper than the interpreter's recursion limit (a ``RecursionError``, which is no ``ValueError``)."""
    try:
        return json.loads(data)
    except RecursionError:
        raise EventContractError("too_deeply_nested", f"{what} is nested too deeply to read", fields) from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, and the integer digits limit
        raise EventContractError("not_json", f"{what} is not JSON: {exc}", fields) from None


def _has_numbers(cls: type[DomainEvent]) -> bool:
    """Whether a payload has a field of JSON numbers that are not integers (a ``Decimal`` or a
    ``float``), anywhere. Such a payload is kept off the one-pass parse: pydantic-core reads a
    JSON number for a plain ``Decimal`` from its digits when given the bytes, and from the float
    that ``json.loads`` made otherwise; ``1.0`` becomes ``Decimal("1")`` one way and
    ``Decimal("1.0")`` the other, equal values stored (and hashed) as different text."""
    return '"number"' in json.dumps(cls.model_json_schema()) or bool(as_sent_fields(cls))


def _describe(exc: ValidationError, prefix: str, skip: frozenset[str] = frozenset()) -> tuple[str, list[str]]:
    fields, parts = [], []
    for err in exc.errors(include_url=False, include_input=False):
        if err["loc"] and err["loc"][0] in skip:
            continue
        path = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        fields.append(path or "(root)")
        parts.append(f"{path or '(root)'}: {err['msg']}")
    return "; ".join(parts[:10]) + (f" (+{len(parts) - 10} more)" if len(parts) > 10 else ""), fields


@functools.cache
def producer_keys(cls: type[DomainEvent]) -> tuple[str, ...]:
    """The fields of a payload class that are producers' keys (``Key``, optional or not)."""

    def is_key(annotation: Any) -> bool:
        if get_origin(annotation) is Annotated:
            return PRODUCER_KEY in get_args(annotation)[1:] or is_key(get_args(annotation)[0])
        return any(is_key(arg) for arg in get_args(annotation))

    return tuple(name for name, f in cls.model_fields.items() if PRODUCER_KEY in f.metadata or is_key(f.annotation))


@functools.cache
def as_sent_fields(cls: type[DomainEvent]) -> tuple[tuple[str, AsSent], ...]:
    """(field, its ``AsSent``) of each field of a payload class whose text a producer must send matching
    the pattern (``AsSent``, optional or not). Such a class is parsed the general way only
    (``_has_numbers``), where ``parse_message`` checks the text as it was sent."""

    def marks(annotation: Any) -> list[AsSent]:
        if get_origin(annotation) is Annotated:
            found = [m for m in get_args(annotation)[1:] if isinstance(m, AsSent)]
            return found or marks(get_args(annotation)[0])
        return [m for arg in get_args(annotation) for m in marks(arg)]

    out = []
    for name, f in cls.model_fields.items():
        found = [m for m in f.metadata if isinstance(m, AsSent)] or marks(f.annotation)
        if found:
            out.append((name, found[0]))
    return tuple(out)


class _StoredRow(RecordedEvent):
    """The base of the per-type recorded classes (``EventRegistry.recorded_class``): a row of the log
    read back. Its keys are the log's column names, put there by the store's own query and never by
    a sender, so it does not look for unknown keys: pydantic-core would check every key of every row
    against the fields for that (about 6% of a row's validation). Every field is still validated,
    and the payload's models still refuse unknown fields.

    The envelope's columns are read back as the types they are (an integer, a string, a UUID, an
    aware instant), without the bounds that the contract checked when the event was appended: a
    position or version of at least 1, a name of printable characters. The log guarantees those
    itself (positions and versions are assigned by the log; the envelope's names were checked when
    the event was made and the stream id by ``StreamAppend``; ``audit verify`` finds a row altered
    since), and checking them again on every read cost about 4% of a replay's instructions. The
    payload is validated in full, bounds included."""

    model_config = ConfigDict(extra="ignore")

    position: int
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    source: str


class EventRegistry:
    def __init__(self) -> None:
        self._types: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._recorded: dict[str, type[RecordedEvent]] = {}
        self._published: dict[str, type[RecordedEvent]] = {}
        self._messages: dict[str, type[EventMessage] | None] = {}  # None: parsed the general way only
        # event type -> (current schema version, the recorded class's ``model_validate``): the
        # replay hot path, for rows of a type already read once in its current version.
        self._fast_recorded: dict[str, tuple[int, Callable[[dict[str, Any]], RecordedEvent]]] = {}

    # -- registration ------------------------------------------------------------------------
    def register(self, cls: type[DomainEvent]) -> type[DomainEvent]:
        name = cls.event_type
        if name in self._types and self._types[name] is not cls:
            raise ValueError(f"event type {name!r} is registered twice")
        self._types[name] = cls
        return cls

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register a function taking a ``from_version`` payload to ``from_version + 1``."""

        def decorate(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return decorate

    @property
    def types(self) -> dict[str, type[DomainEvent]]:
        return dict(self._types)

    def payload_class(self, event_type: str) -> type[DomainEvent]:
        try:
            return self._types[event_type]
        except KeyError:
            raise EventContractError(
                "unknown_event_type", f"unknown event type {event_type!r}", ["event_type"]
            ) from None

    def recorded_class(self, event_type: str) -> type[RecordedEvent]:
        """``RecordedEvent`` narrowed to one payload type that it reads from JSON text (``str`` or UTF-8
        ``bytes``), so that a stored row (columns plus the payload's JSON) is validated by one call
        into pydantic-core."""
        cls = self._recorded.get(event_type)
        if cls is None:
            payload_cls = self.payload_class(event_type)
            cls = create_model(f"Recorded{event_type}", __base__=_StoredRow, payload=(Json[payload_cls], ...))
            self._recorded[event_type] = cls
        return cls

    def parse_published(self, subject: str, body: bytes | str) -> RecordedEvent:
        """A recorded event as the relay publishes it on ``guanhuai.events.<EventType>``."""
        event_type = subject.rsplit(".", 1)[-1]
        cls = self._published.get(event_type)
        if cls is None:
            payload_cls = self.payload_class(event_type)
            cls = create_model(f"Published{event_type}", __base__=RecordedEvent, payload=(payload_cls, ...))
            self._published[event_type] = cls
        try:
            event = cls.model_validate_json(body)
        except ValidationError as exc:
            if _not_json(exc):
                raise EventContractError("not_json", f"{subject}: message is not JSON") from None
            detail, fields = _describe(exc, "")
            raise EventContractError("invalid_payload", f"{subject}: {detail}", fields) from None
        if event.event_type != event_type:
            raise EventContractError("subject_mismatch", f"{event.event_type} published on {subject}", ["event_type"])
        return event

    def parse_recorded_rows(self, rows: Iterable[Sequence[Any]]) -> list[RecordedEvent]:
        """Stored rows, each a sequence of the log's columns in :data:`ROW_FIELDS` order, to their
        models: what :meth:`parse_recorded` does row by row, with its fast path written out in one
        loop. A replay decodes millions of rows, and the two Python calls per row that this saves
        (building the mapping, entering ``parse_recorded``) are a tenth of a row's cost."""
        fast = self._fast_recorded
        decoded = []
        for r in rows:
            row = {
                "position": r[0], "event_id": r[1], "stream_id": r[2], "stream_version": r[3],
                "event_type": r[4], "schema_version": r[5], "occurred_at": r[6], "recorded_at": r[7],
                "source": r[8], "correlation_id": r[9], "causation_id": r[10], "payload": r[11],
            }
            known = fast.get(r[4])
            if known is not None and known[0] == r[5]:
                try:
                    decoded.append(known[1](row))
                    continue
                except ValidationError:
                    pass  # the checked path says what is wrong, with field names
            decoded.append(self._parse_recorded_checked(row))
        return decoded

    def parse_recorded(self, row: dict[str, Any]) -> RecordedEvent:
        """A stored row (a mapping of the log's columns; ``payload`` as JSON text or its UTF-8 bytes)
        to its model, upcasting an older schema version to the current one."""
        fast = self._fast_recorded.get(row["event_type"])
        if fast is not None and fast[0] == row["schema_version"]:
            try:
                return fast[1](row)
            except ValidationError:
                pass  # the path below says what is wrong, with field names
        return self._parse_recorded_checked(row)

    def _parse_recorded_checked(self, row: dict[str, Any]) -> RecordedEvent:
        event_type, schema_version = row["event_type"], row["schema_version"]
        cls = self.payload_class(event_type)
        try:
            if schema_version == cls.schema_version:
                recorded = self.recorded_class(event_type)
                event = recorded.model_validate(row)
                self._fast_recorded[event_type] = (schema_version, recorded.model_validate)
                return event
            payload = self.parse_payload(event_type, schema_version, row["payload"])
            return _StoredRow.model_validate({**row, "schema_version": payload.schema_version, "payload": payload})
        except ValidationError as exc:
            detail, fields = _describe(exc, "")
            in_payload = all(f.startswith("payload") for f in fields)
            raise EventContractError(
                "invalid_payload" if in_payload else "invalid_stored_event",
                f"stored {event_type} v{schema_version} at position {row.get('position')}: {detail}",
                fields,
            ) from None

    # -- parsing -----------------------------------------------------------------------------
    def parse_payload(self, event_type: str, schema_version: int, data: dict[str, Any] | str | bytes) -> DomainEvent:
        cls = self.payload_class(event_type)
        if not isinstance(schema_version, int) or isinstance(schema_version, bool) or schema_version < 1:
            raise EventContractError("unsupported_schema_version", "schema_version must be a positive integer", ["schema_version"])
        if schema_version > cls.schema_version:
            raise EventContractError(
                "unsupported_schema_version",
                f"{event_type} v{schema_version} is newer than this system knows (v{cls.schema_version})",
                ["schema_version"],
            )
        try:
            if schema_version == cls.schema_version:
                if isinstance(data, dict):
                    return cls.model_validate(data)
                return cls.model_validate_json(data)
            payload = _load_json(data, "payload", ["payload"]) if isinstance(data, (str, bytes)) else dict(data)
            if not isinstance(payload, dict):
                raise EventContractError("invalid_payload", "payload must be a JSON object", ["payload"])
            for version in range(schema_version, cls.schema_version):
                step = self._upcasters.get((event_type, version))
                if step is None:
                    raise EventContractError(
                        "unsupported_schema_version", f"no upcaster for {event_type} v{version}", ["schema_version"]
                    )
                payload = step(payload)
            return cls.model_validate(payload)
        except ValidationError as exc:
            if _not_json(exc):
                raise EventContractError("not_json", f"{event_type} v{schema_version}: payload is not JSON", ["payload"]) from None
            detail, fields = _describe(exc, "payload")
            raise EventContractError("invalid_payload", f"{event_type} v{schema_version}: {detail}", fields) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EventContractError("not_json", f"payload is not JSON: {exc}", ["payload"]) from None

    def parse_message(self, data: bytes | str | dict[str, Any], expected_type: str | None = None) -> EventMessage:
        """Parse an event as a producer sends it (JSON bytes or a dict) into an ``EventMessage``.

        ``expected_type``: the event type the message is most likely of (its subject names one).
        Text of that type, in its current schema version, is then validated in one pass of
        pydantic-core over the bytes, instead of ``json.loads`` and two validations; whatever that
        pass refuses or cannot settle (another type or version, no correlation id, a key too
        long, any error) is parsed again the general way below, which gives the same event, or
        the error with its reason. That pass only ever refuses what the general way takes (a
        byte-order mark, a lone surrogate escape), never takes what it refuses: the schema
        version must be a JSON integer there, as it is below."""
        if expected_type is not None and isinstance(data, (bytes, str)):
            event = self._message_of_type(expected_type, data)
            if event is not None:
                return event
        if isinstance(data, (bytes, str)):
            obj = _load_json(data, "message")
        else:
            obj = data
        if not isinstance(obj, dict):
            raise EventContractError("invalid_envelope", "an event is a JSON object", ["(root)"])
        missing = [k for k in ("event_type", "schema_version", "payload") if k not in obj]
        if missing:
            raise EventContractError("invalid_envelope", f"missing field(s): {', '.join(missing)}", missing)
        event_type = obj["event_type"]
        if not isinstance(event_type, str):
            raise EventContractError("invalid_envelope", "event_type must be a string", ["event_type"])
        payload = obj["payload"]
        if not isinstance(payload, dict):
            raise EventContractError("invalid_payload", "payload must be a JSON object", ["payload"])
        parsed = self.parse_payload(event_type, obj["schema_version"], payload)
        too_long = [f"payload.{name}" for name in producer_keys(type(parsed))
                    if len(getattr(parsed, name) or "") > KEY_MAX_LENGTH]
        if too_long:
            raise EventContractError("invalid_payload", f"{event_type}: {', '.join(too_long)}: at most "
                                     f"{KEY_MAX_LENGTH} characters", too_long)
        not_as_sent = [(f"payload.{name}", rule.what) for name, rule in as_sent_fields(type(parsed))
                       if payload.get(name) is not None
                       and not (isinstance(payload[name], str) and re.fullmatch(rule.pattern, payload[name]))]
        if not_as_sent:
            raise EventContractError("invalid_payload", f"{event_type}: " + "; ".join(f"{f}: {what}" for f, what in
                                     not_as_sent), [f for f, _ in not_as_sent])
        envelope = {**obj, "schema_version": parsed.schema_version, "payload": parsed}
        defaulted = envelope.get("correlation_id") is None
        if defaulted:
            envelope["correlation_id"] = obj.get("event_id")  # a conversation starts with its first event
        try:
            return EventMessage.model_validate(envelope)
        except ValidationError as exc:
            # A correlation id the sender did not send is not theirs to fix: report event_id only.
            detail, fields = _describe(exc, "", frozenset({"correlation_id"}) if defaulted else frozenset())
            raise EventContractError("invalid_envelope", f"{event_type}: {detail}", fields) from None

    def _message_of_type(self, event_type: str, data: bytes | str) -> EventMessage | None:
        """``data`` as an ``EventMessage`` of ``event_type`` at its current schema version, or None."""
        if event_type not in self._messages:
            payload_cls = self._types.get(event_type)
            if payload_cls is None:
                return None
            self._messages[event_type] = None if _has_numbers(payload_cls) else create_model(
                f"Message{event_type}", __base__=EventMessage, payload=(payload_cls, ...),
                schema_version=(Annotated[StrictInt, Field(ge=1)], ...))
        cls = self._messages[event_type]
        if cls is None:
            return None
        try:
            event = cls.model_validate_json(data)
        except ValidationError:
            return None
        payload = event.payload
        if event.event_type != event_type or event.schema_version != payload.schema_version:
            return None
        if any(len(getattr(payload, name) or "") > KEY_MAX_LENGTH for name in producer_keys(type(payload))):
            return None
        # The same event as an ``EventMessage``, as the general way gives it: validated again, which
        # cannot fail (the class above has every rule of ``EventMessage``) and costs less than
        # ``model_construct``'s loop in Python.
        return EventMessage.model_validate({name: getattr(event, name) for name in event.model_fields_set})

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        """One JSON Schema per event type: the envelope with that type's payload."""
        out = {}
        for name, cls in sorted(self._types.items()):
            payload_schema = cls.model_json_schema(mode="serialization")
            envelope = SentMessage.model_json_schema(mode="serialization")  # what a producer may send
            defs = {**envelope.pop("$defs", {}), **payload_schema.pop("$defs", {})}
            envelope["properties"]["payload"] = payload_schema
            envelope["properties"]["event_type"] = {"const": name, "type": "string"}
            envelope["properties"]["schema_version"] = {"const": cls.schema_version, "type": "integer"}
            envelope["title"] = name
            envelope["description"] = (cls.__doc__ or name).strip().splitlines()[0]
            envelope["$schema"] = "https://json-schema.org/draft/2020-12/schema"
            envelope["$id"] = f"urn:guanhuai:event:{name}:v{cls.schema_version}"
            if defs:
                envelope["$defs"] = defs
            out[name] = envelope
        return out
