"""The transport-neutral core of every consuming service: parse a batch of messages, dead-letter
what cannot be taken, and hand the rest to the service's handler inside one log transaction that
also records which inputs were handled.

The NATS side (``shared/events/nats.py``) only moves bytes in and acks out; everything that
decides whether an input has an effect lives here, against the database, so it is testable
without a broker and exactly-once whatever the broker redelivers.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from hashlib import sha1
from time import perf_counter
from typing import Any, ClassVar, Protocol, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, OperationalError

from .base import DomainEvent, EventMessage, unchecked_message
from .inbox import (
    DeadLetter,
    already_processed,
    bump_consumer_version,
    consumer_version,
    dead_letters,
    mark_processed,
    record_dead_letters,
)
from .logs import get_logger, info_enabled
from .registry import EventContractError
from .store import EventStore, Transaction
from .subjects import MAX_MESSAGE_BYTES

T = TypeVar("T")
OUTCOME_NAMESPACE = uuid.UUID("0b6f2f5e-8d4e-4a53-9c1d-6775616e6875")
EVENT_ID_MAX_LENGTH = dead_letters.c.event_id.type.length
SUBJECT_MAX_LENGTH = dead_letters.c.subject.type.length


@dataclass(frozen=True)
class Incoming:
    """One message as the broker delivered it."""

    subject: str
    body: bytes
    headers: dict[str, str]
    stream: str
    sequence: int
    delivered: int = 1


@dataclass
class BatchResult:
    handled: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    failed: list[Incoming] = field(default_factory=list)  # to be redelivered (nak)
    transient: bool = False  # the whole batch failed because the database is busy or away: try it again as it is
    # Where the commit of the batch's inputs spent its time, in ms (the last try, if it was tried
    # again or one input at a time): deciding ahead of the write lock, waiting for the lock, writing
    # under it, committing. For the service's batch_done log line.
    timings: dict[str, float] = field(default_factory=dict)


class Rejected(Exception):
    """Input that fits the contract but not this consumer (wrong subject for its type...)."""

    def __init__(self, code: str, detail: str, event_id: str | None = None) -> None:
        super().__init__(detail)
        self.code, self.detail, self.event_id = code, detail, event_id


class Prepared(Protocol):
    """What a batch was decided to lead to: its events and the rows of the service's own tables."""

    def write(self, tx: Transaction) -> None:
        """Append the events and write the rows, in the transaction that marks the inputs handled."""
        ...


class DeciderHandler(ABC):
    """A service that decides: each input has an effect once (the inbox tracks which inputs it has
    handled, in the transaction that writes their effects). ``prepare`` reads the service's own
    tables through ``conn`` and decides, writing nothing; what it returns is written under the
    log's write lock. So a batch is decided before the lock is taken, while others write, and
    decided again under it only if this consumer's state moved meanwhile."""

    consumer: ClassVar[str]
    tracks_inputs: ClassVar[bool] = True

    @abstractmethod
    def parse(self, message: Incoming) -> EventMessage:
        """Bytes to an event, or :class:`EventContractError` / :class:`Rejected`."""

    @abstractmethod
    def prepare(self, conn: Connection, events: Sequence[EventMessage]) -> Prepared:
        """Decide ``events`` (inputs not handled before) on the state read through ``conn``."""

    def handle(self, tx: Transaction, events: Sequence[EventMessage]) -> None:
        """Decide and write at once, under the lock ``tx`` holds."""
        self.prepare(tx.connection, events).write(tx)


class ProjectionHandler(ABC):
    """A read model: it keeps its own checkpoint (the last log position it has folded in) in the
    transaction that writes its rows, so it is given every input and skips what it has seen."""

    consumer: ClassVar[str]
    tracks_inputs: ClassVar[bool] = False

    @abstractmethod
    def parse(self, message: Incoming) -> Any:
        ...

    @abstractmethod
    def handle(self, tx: Transaction, events: Sequence[Any]) -> None:
        """Fold ``events`` in and move the checkpoint, in ``tx``."""


Handler = DeciderHandler | ProjectionHandler


@dataclass
class _Ahead:
    """A batch decided before the write lock: on the consumer's state at ``version``."""

    version: int
    fresh: list[EventMessage]
    fresh_ids: list[str]
    prepared: Prepared | None


def decide_ahead(store: EventStore, handler: DeciderHandler, batch: Sequence[EventMessage]) -> _Ahead:
    """Decide a batch without the log's write lock, so that another service can write meanwhile.
    The version is read first: whatever commit lands after it, the state read next may include,
    and that commit moves the version, so the batch is decided again under the lock."""
    with store.engine.connect() as conn:
        version = consumer_version(conn, handler.consumer)
        return _Ahead(version, *_decided(conn, handler, batch))


def _decided(conn: Connection, handler: DeciderHandler,
             batch: Sequence[EventMessage]) -> tuple[list[EventMessage], list[str], Prepared | None]:
    """The inputs of ``batch`` not handled yet (each once), their ids, and what they lead to."""
    ids = [str(e.event_id) for e in batch]
    seen = already_processed(conn, handler.consumer, ids)
    fresh, fresh_ids = [], []
    for event, key in zip(batch, ids, strict=True):
        if key not in seen:
            seen.add(key)
            fresh.append(event)
            fresh_ids.append(key)
    return fresh, fresh_ids, handler.prepare(conn, fresh) if fresh else None


_NAMESPACE_BYTES = OUTCOME_NAMESPACE.bytes


def outcome_id(cause: EventMessage | uuid.UUID, index: int = 0) -> uuid.UUID:
    """Event ids of what an input leads to are derived from the input: a replay or a redelivery
    produces the same ids, which the log then treats as already stored. (``uuid5`` of the
    input's id and the index, under :data:`OUTCOME_NAMESPACE`.)"""
    cause_id = cause if isinstance(cause, uuid.UUID) else cause.event_id
    return _derived_id(f"{cause_id}/", index)


# The bits of a name-based (SHA-1) UUID that RFC 4122 fixes: version 5, variant RFC 4122.
def _derived_id(prefix: str, index: int) -> uuid.UUID:
    """``uuid.uuid5(OUTCOME_NAMESPACE, f"{prefix}{index}")``, the namespace's bytes kept at hand."""
    return uuid.UUID(bytes=sha1(_NAMESPACE_BYTES + f"{prefix}{index}".encode()).digest()[:16], version=5)


def outcomes(cause: EventMessage, payloads: Sequence[DomainEvent], source: str) -> list[EventMessage]:
    """Wrap what an input led to: derived ids, the input's conversation, the input as the cause,
    and the input's time (a decision takes effect when what caused it happened).

    Every part of these envelopes is validated already: the cause's envelope when it was parsed,
    the payloads when the decider built them, the ids derived here. So they are assembled without
    a second validation, which was a tenth of a service's CPU per input."""
    wrapped = []
    prefix = f"{cause.event_id}/"
    for index, payload in enumerate(payloads):
        if not isinstance(payload, DomainEvent):
            raise TypeError(f"an outcome is a DomainEvent, not {type(payload).__name__}")
        wrapped.append(unchecked_message({
            "event_id": _derived_id(prefix, index), "event_type": payload.event_type,
            "schema_version": payload.schema_version, "occurred_at": cause.occurred_at, "source": source,
            "correlation_id": cause.correlation_id, "causation_id": cause.event_id, "payload": payload,
        }))
    return wrapped


# SQLSTATEs of a PostgreSQL server that is away or going away, not of a bad statement: connection
# exceptions (class 08), shutting down or starting up (57P01-57P03), too many connections,
# serialization failure and deadlock.
# A read-only transaction or a full disk (25006, class 53) is an operator's matter, not the input's:
# held and retried like a server that is away, never spent against max_deliver.
TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53", "40001", "40P01", "25006")


# SQLite's primary result codes for a database that is busy, locked, read-only or unreachable for
# now (its file, disk or lock): an operator mends them, and the input waits meanwhile. A missing
# table or a bad statement is no such thing.
TRANSIENT_SQLITE_CODES = frozenset({
    sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL, sqlite3.SQLITE_READONLY,
})


def transient(exc: BaseException) -> bool:
    """Database busy or away: worth retrying as it is."""
    if isinstance(exc, DBAPIError) and isinstance(exc.orig, sqlite3.Error):
        code = getattr(exc.orig, "sqlite_errorcode", None)
        return code is not None and (code & 0xFF) in TRANSIENT_SQLITE_CODES
    if isinstance(exc, OperationalError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or ""
        if sqlstate.startswith(TRANSIENT_SQLSTATES):
            return True
        return isinstance(exc.orig, (ConnectionError, OSError)) or isinstance(exc.__cause__, (ConnectionError, OSError))
    return isinstance(exc, (ConnectionError, asyncio.TimeoutError, TimeoutError))


async def with_retries(
    action: Callable[[], Awaitable[Any]], *, attempts: int = 8, first_delay: float = 0.05, what: str = "database"
) -> Any:
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return await action()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not transient(exc) or attempt == attempts:
                raise
            get_logger().warning("transient_fault_retrying", what=what, attempt=attempt, error=type(exc).__name__,
                                 detail=str(exc), delay_s=round(delay, 3))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def retrying(action: Callable[[], T], *, attempts: int = 8, first_delay: float = 0.05, what: str = "database") -> T:
    """:func:`with_retries` for a worker thread's synchronous work."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as exc:  # noqa: BLE001 - classified below
            if not transient(exc) or attempt == attempts:
                raise
            get_logger().warning("transient_fault_retrying", what=what, attempt=attempt, error=type(exc).__name__,
                                 detail=str(exc), delay_s=round(delay, 3))
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


def dead_letter_of(handler: Handler, message: Incoming, code: str, detail: str, event_id: str | None) -> DeadLetter:
    # The id may come from a sender's Nats-Msg-Id header, of any length: one that does not fit the
    # column is no event id of ours, and PostgreSQL would refuse the row (and the batch with it).
    if event_id is not None:
        event_id = _storable(event_id) if len(event_id) <= EVENT_ID_MAX_LENGTH else None
    return DeadLetter(
        consumer=handler.consumer, nats_stream=message.stream, nats_sequence=message.sequence,
        subject=_storable(message.subject[:SUBJECT_MAX_LENGTH]),
        headers={_storable(k): _storable(v) for k, v in message.headers.items()}, body=message.body, reason=code,
        detail=_storable(detail[:2000]), event_id=event_id,
    )


def _storable(text: str) -> str:
    """Text any database takes: a lone surrogate (JSON can escape one; UTF-8 cannot hold it)
    becomes its escape sequence."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def admit(handler: Handler, message: Incoming) -> EventMessage | DeadLetter:
    """What a message is before anything is decided: an event to handle, or a dead letter with
    its reason. Pure, so whatever the bytes, it ends as one of the two: a parser that fails in a
    way nobody foresaw (a bug) dead-letters that message with the exception named, instead of
    failing the whole batch again on every redelivery."""
    msg_id = message.headers.get("Nats-Msg-Id")
    try:
        if len(message.body) > MAX_MESSAGE_BYTES:
            raise Rejected("oversized", f"{len(message.body)} bytes; the limit is {MAX_MESSAGE_BYTES}")
        return handler.parse(message)
    except EventContractError as exc:
        return dead_letter_of(handler, message, exc.code, str(exc), msg_id)
    except Rejected as exc:
        return dead_letter_of(handler, message, exc.code, exc.detail, exc.event_id or msg_id)
    except Exception as exc:  # noqa: BLE001 - deterministic: parsing is pure, a retry fails alike
        return dead_letter_of(handler, message, "unreadable", f"{type(exc).__name__}: {exc}", msg_id)


async def process_batch(
    store: EventStore, handler: Handler, messages: Sequence[Incoming], *, max_deliver: int = 5
) -> BatchResult:
    """:func:`handle_batch` in a worker thread: the event loop goes on fetching and acking meanwhile."""
    return await asyncio.to_thread(handle_batch, store, handler, messages, max_deliver=max_deliver)


def handle_batch(store: EventStore, handler: Handler, messages: Sequence[Incoming], *, max_deliver: int = 5) -> BatchResult:
    """Handle a batch; everything in it is either handled (or a known duplicate), dead-lettered, or
    returned in ``failed`` for redelivery. A message whose handler keeps failing is dead-lettered
    on its last delivery rather than lost or retried forever. The steps: admit (parse or
    dead-letter each message), decide ahead and write under the lock (:func:`commit`), and if the
    batch fails, isolate the input that fails (:func:`_isolate`)."""
    log = get_logger(consumer=handler.consumer)
    good, letters = admit_all(handler, messages)
    try:
        result = retrying(lambda: commit(store, handler, good, letters))
    except Exception as exc:  # noqa: BLE001 - isolate the message that fails
        if transient(exc):
            return _held(log, exc, messages)
        log.warning("batch_failed_isolating", error=type(exc).__name__, detail=str(exc), size=len(messages))
        isolated = _isolate(store, handler, good, letters, max_deliver, log)
        if isolated is None:
            return BatchResult(failed=list(messages), transient=True)
        result = isolated
    else:
        _log_handled(log, handler, good)
    for letter in letters:
        log.warning("dead_lettered", reason=letter.reason, detail=letter.detail, subject=letter.subject,
                    nats_sequence=letter.nats_sequence, event_id=letter.event_id)
    return result


def admit_all(handler: Handler, messages: Sequence[Incoming]) -> tuple[list[tuple[Incoming, Any]], list[DeadLetter]]:
    """The batch's messages split into events to handle and dead letters (see :func:`admit`)."""
    good: list[tuple[Incoming, Any]] = []
    letters: list[DeadLetter] = []
    for message in messages:
        admitted = admit(handler, message)
        if isinstance(admitted, DeadLetter):
            letters.append(admitted)
        else:
            good.append((message, admitted))
    return good, letters


def commit(store: EventStore, handler: Handler, batch: Sequence[tuple[Incoming, Any]],
           dead: list[DeadLetter]) -> BatchResult:
    """Decide ``batch`` ahead of the log's write lock (a decider's), then take the lock and write
    its effects, the inputs handled and the dead letters in one transaction."""
    events = [e for _, e in batch]
    started = perf_counter()
    # Deciding is most of a batch's work: done before the write lock, other services write
    # meanwhile. It stands if no commit of this consumer came between (else decided again).
    ahead = decide_ahead(store, handler, events) if isinstance(handler, DeciderHandler) and events else None
    decided = perf_counter()
    with store.transaction() as tx:
        tx.lock()
        locked = perf_counter()
        handled = write_locked(tx, handler, events, ahead)
        stored = record_dead_letters(tx.connection, dead)
        written = perf_counter()
    result = BatchResult(handled=handled, duplicates=len(events) - handled, dead_lettered=stored)
    if batch:  # (not the commit of dead letters alone, which follows a batch that failed)
        result.timings = {"decide_ms": _ms(decided - started), "lock_wait_ms": _ms(locked - decided),
                          "write_ms": _ms(written - locked), "commit_ms": _ms(perf_counter() - written)}
    return result


def write_locked(tx: Transaction, handler: Handler, events: list[Any], ahead: _Ahead | None) -> int:
    """Under the write lock: write what the batch leads to; how many inputs had an effect."""
    if isinstance(handler, ProjectionHandler):  # it keeps its own checkpoint instead of the inbox's
        if events:
            handler.handle(tx, events)
        return len(events)
    conn = tx.connection
    if ahead is not None and consumer_version(conn, handler.consumer) == ahead.version:
        fresh, fresh_ids, prepared = ahead.fresh, ahead.fresh_ids, ahead.prepared
    else:  # another instance of this consumer committed meanwhile: decide again on what it wrote
        fresh, fresh_ids, prepared = _decided(conn, handler, events)
    if prepared is not None:
        prepared.write(tx)
    if fresh:
        mark_processed(conn, handler.consumer, fresh_ids)
        bump_consumer_version(conn, handler.consumer)
    return len(fresh)


def _isolate(store: EventStore, handler: Handler, good: list[tuple[Incoming, Any]], letters: list[DeadLetter],
             max_deliver: int, log: Any) -> BatchResult | None:
    """The batch failed: commit its inputs one at a time, so that only the one that fails (a
    poison input) is redelivered, or dead-lettered on its last delivery. None: the database went
    away meanwhile, or the dead letters cannot be written; the whole batch is held."""
    result = BatchResult()
    for message, event in good:
        try:
            one = retrying(lambda m=message, e=event: commit(store, handler, [(m, e)], []))
            result.handled += one.handled
            result.duplicates += one.duplicates
        except Exception as exc:  # noqa: BLE001 - a poison input, or the database went away meanwhile
            if transient(exc):  # not this input's fault: hold the whole batch (what was committed is in the inbox)
                _held(log, exc, [])
                return None
            event_id = str(getattr(event, "event_id", "")) or message.headers.get("Nats-Msg-Id")
            if message.delivered >= max_deliver:
                letters.append(dead_letter_of(handler, message, "handler_error", f"{type(exc).__name__}: {exc}", event_id))
                log.error("handler_failed_dead_lettering", event_id=event_id, error=type(exc).__name__, detail=str(exc))
            else:
                log.warning("handler_failed_will_retry", event_id=event_id, delivered=message.delivered,
                            error=type(exc).__name__, detail=str(exc))
                result.failed.append(message)
    try:
        result.dead_lettered = retrying(lambda: commit(store, handler, [], letters)).dead_lettered
    except Exception as exc:  # noqa: BLE001 - a dead letter that cannot be written is never dropped
        # Acked, these messages would be lost; nak'ed, they would spend deliveries until
        # JetStream gives up on them. Held, they wait (in the service's hands) for the
        # database to take them, however long that is, and the wait is logged as an error.
        log.error("dead_letters_not_written", error=type(exc).__name__, detail=str(exc), letters=len(letters))
        return None
    return result


def _log_handled(log: Any, handler: Handler, good: list[tuple[Incoming, Any]]) -> None:
    if handler.tracks_inputs and info_enabled(log):
        for message, event in good:
            log.info("handled", event_id=str(event.event_id), correlation_id=str(event.correlation_id),
                     event_type=event.event_type, stream=message.stream, position=message.sequence,
                     subject=message.subject)


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def _held(log: Any, exc: BaseException, messages: Sequence[Incoming]) -> BatchResult:
    """The database is away: nothing of the batch is decided; the whole batch is to be tried again."""
    log.error("batch_failed_transient", error=type(exc).__name__, detail=str(exc), size=len(messages))
    return BatchResult(failed=list(messages), transient=True)
