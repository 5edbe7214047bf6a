"""The append-only event log: the system of record.

* ``append`` writes events to a stream at an expected version; a stale version raises
  :class:`ConcurrencyError` and nothing of that transaction is stored.
* An event id already stored is already done: appending the same events again returns the stored
  positions and writes nothing.
* Every event gets a global position. Appends are serialised (``BEGIN IMMEDIATE`` on SQLite, a
  transaction-scoped advisory lock on PostgreSQL) and positions are assigned inside that lock, so
  positions become visible in order and without gaps: a reader tailing ``position > checkpoint``
  never skips one, however many writers there are.
* Each row's ``hash`` chains over the previous row's hash (see :mod:`.hashing`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, String, bindparam, cast, func, literal, select, text, type_coerce
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .base import EventMessage, RecordedEvent
from .catalog import registry as default_registry
from .database import create_engine, write_connection
from .hashing import GENESIS, chain_hash
from .registry import EventRegistry
from .tables import events, metadata, utc_text

ADVISORY_LOCK_KEY = 0x6775616E68756169 & 0x7FFFFFFFFFFFFFFF  # "guanhuai"
ANY = None  # expected_version meaning "wherever the stream is"

_COLUMNS = [
    events.c.position,
    events.c.event_id,
    events.c.stream_id,
    events.c.stream_version,
    events.c.event_type,
    events.c.schema_version,
    events.c.occurred_at,
    events.c.recorded_at,
    events.c.source,
    events.c.correlation_id,
    events.c.causation_id,
    events.c.payload,
]


class ConcurrencyError(Exception):
    """The stream moved on since the caller read it."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r} is at version {actual}, expected {expected}")
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class DuplicateEventError(Exception):
    """Some, not all, of a batch's event ids are stored already: not a retry of the same append."""


@dataclass(frozen=True, slots=True)
class StreamAppend:
    stream_id: str
    events: Sequence[EventMessage]
    expected_version: int | None = ANY


@dataclass(frozen=True, slots=True)
class AppendResult:
    stream_id: str
    positions: list[int]
    last_version: int
    already_stored: bool = False


@dataclass(slots=True)
class _Head:
    position: int
    hash: str
    recorded_at: datetime | None


class Transaction:
    """One write transaction on the log. Service tables written through ``connection`` commit
    (or roll back) together with the events appended here."""

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self._head: _Head | None = None
        self.appended: list[int] = []

    async def _lock_head(self) -> _Head:
        if self._head is None:
            if self.connection.dialect.name == "postgresql":
                await self.connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            row = (
                await self.connection.execute(
                    select(events.c.position, events.c.hash, events.c.recorded_at)
                    .order_by(events.c.position.desc())
                    .limit(1)
                )
            ).first()
            self._head = _Head(row[0], row[1], row[2]) if row else _Head(0, GENESIS, None)
        return self._head

    async def append(self, stream_id: str, new: Sequence[EventMessage], expected_version: int | None = ANY) -> AppendResult:
        return (await self.append_streams([StreamAppend(stream_id, new, expected_version)]))[0]

    async def append_streams(self, batch: Sequence[StreamAppend]) -> list[AppendResult]:
        head = await self._lock_head()
        conn = self.connection
        ids = [str(e.event_id) for item in batch for e in item.events]
        if len(ids) != len(set(ids)):
            raise DuplicateEventError("the same event id appears twice in one append")
        stored = await _stored_ids(conn, ids)
        stream_ids = list({item.stream_id for item in batch})
        versions = dict(
            (
                await conn.execute(
                    select(events.c.stream_id, func.max(events.c.stream_version))
                    .where(events.c.stream_id.in_(stream_ids))
                    .group_by(events.c.stream_id)
                )
            ).all()
        ) if stream_ids else {}

        now = datetime.now(timezone.utc)
        recorded_at = max(now, head.recorded_at) if head.recorded_at else now
        recorded_text = utc_text(recorded_at)
        keep_text = conn.dialect.name == "sqlite"
        rows: list[tuple[Any, ...]] = []
        results: list[AppendResult] = []
        position, prev = head.position, head.hash
        for item in batch:
            item_ids = [str(e.event_id) for e in item.events]
            known = [stored[i] for i in item_ids if i in stored]
            if known and len(known) == len(item_ids):
                results.append(AppendResult(item.stream_id, [k[0] for k in known], max(k[1] for k in known), True))
                continue
            if known:
                raise DuplicateEventError(f"stream {item.stream_id!r}: some of these events are stored already")
            current = versions.get(item.stream_id, 0)
            if item.expected_version is not None and item.expected_version != current:
                raise ConcurrencyError(item.stream_id, item.expected_version, current)
            first = position + 1
            for version, (event_id, ev) in enumerate(zip(item_ids, item.events, strict=True), start=current + 1):
                position += 1
                occurred_text = utc_text(ev.occurred_at)
                correlation = str(ev.correlation_id)
                causation = str(ev.causation_id) if ev.causation_id else None
                payload = ev.payload.model_dump_json()
                digest = chain_hash(
                    prev, position, event_id, item.stream_id, version, ev.event_type, ev.schema_version,
                    occurred_text, recorded_text, ev.source, correlation, causation, payload,
                )
                rows.append((
                    position, event_id, item.stream_id, version, ev.event_type, ev.schema_version,
                    occurred_text if keep_text else ev.occurred_at, recorded_text if keep_text else recorded_at,
                    ev.source, correlation, causation, payload, prev, digest,
                ))
                prev = digest
            versions[item.stream_id] = current + len(item.events)
            results.append(AppendResult(item.stream_id, list(range(first, position + 1)), versions[item.stream_id]))
        if rows:
            await conn.exec_driver_sql(_insert_sql(conn), rows)
            self._head = _Head(position, prev, recorded_at)
            self.appended.extend(r[0] for r in rows)
        return results


_INSERT_ORDER = (
    "position", "event_id", "stream_id", "stream_version", "event_type", "schema_version", "occurred_at",
    "recorded_at", "source", "correlation_id", "causation_id", "payload", "prev_hash", "hash",
)
_insert_cache: dict[str, str] = {}


def _insert_sql(conn: AsyncConnection) -> str:
    """The INSERT in the driver's own parameter style, rows given as tuples in ``_INSERT_ORDER``:
    the hot path skips per-row statement processing (values are already in stored form)."""
    name = conn.dialect.name
    if name not in _insert_cache:
        compiled = events.insert().values({c: bindparam(c) for c in _INSERT_ORDER}).compile(dialect=conn.dialect)
        if list(compiled.positiontup or ()) != list(_INSERT_ORDER):
            raise RuntimeError("unexpected parameter order for the events insert")
        _insert_cache[name] = str(compiled)
    return _insert_cache[name]


async def _stored_ids(conn: AsyncConnection, ids: list[str]) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        result = await conn.execute(
            select(events.c.event_id, events.c.position, events.c.stream_version).where(events.c.event_id.in_(chunk))
        )
        found.update({r[0]: (r[1], r[2]) for r in result})
    return found


def _document(dialect: str) -> Any:
    """A SQL expression rendering a whole row as the JSON of a ``RecordedEvent``."""
    names = ("position", "event_id", "event_type", "schema_version", "occurred_at", "recorded_at", "source",
             "correlation_id", "causation_id", "stream_id", "stream_version")
    if dialect == "postgresql":
        build, payload = func.json_build_object, cast(events.c.payload, JSON)
    else:
        build, payload = func.json_object, func.json(events.c.payload)
    args: list[Any] = []
    for name in names:
        args += [literal(name), type_coerce(events.c[name], String)]
    return type_coerce(build(*args, literal("payload"), payload), String)


class EventStore:
    """The event log on one database. Build it with :meth:`open`; close it with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, registry: EventRegistry = default_registry) -> None:
        self.engine = engine
        self.registry = registry

    @classmethod
    async def open(cls, url: str, *, create: bool = True, registry: EventRegistry = default_registry) -> EventStore:
        store = cls(create_engine(url), registry)
        if create:
            await store.create_schema()
        return store

    async def close(self) -> None:
        await self.engine.dispose()

    async def create_schema(self) -> None:
        async with write_connection(self.engine) as conn, conn.begin():
            await conn.run_sync(metadata.create_all)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- writing -----------------------------------------------------------------------------
    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with write_connection(self.engine) as conn, conn.begin():
            yield Transaction(conn)

    async def append(self, stream_id: str, new: Sequence[EventMessage], expected_version: int | None = ANY) -> AppendResult:
        async with self.transaction() as tx:
            return await tx.append(stream_id, new, expected_version)

    async def append_streams(self, batch: Sequence[StreamAppend]) -> list[AppendResult]:
        async with self.transaction() as tx:
            return await tx.append_streams(batch)

    # -- reading -----------------------------------------------------------------------------
    async def head_position(self) -> int:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.coalesce(func.max(events.c.position), 0)))).scalar_one()

    async def stream_version(self, stream_id: str) -> int:
        async with self.engine.connect() as conn:
            query = select(func.coalesce(func.max(events.c.stream_version), 0)).where(events.c.stream_id == stream_id)
            return (await conn.execute(query)).scalar_one()

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        query = (
            select(*_COLUMNS)
            .where(events.c.stream_id == stream_id, events.c.stream_version > after_version)
            .order_by(events.c.stream_version)
        )
        async with self.engine.connect() as conn:
            return [self.decode(row) for row in await conn.execute(query)]

    async def read_all(
        self,
        after: int = 0,
        *,
        batch_size: int = 1000,
        until_position: int | None = None,
        until_recorded: datetime | None = None,
        event_types: Sequence[str] | None = None,
    ) -> AsyncIterator[list[RecordedEvent]]:
        """Every event after position ``after``, in order, in batches; optionally only up to a
        position or up to a recorded time (what the log knew then).

        The database renders each row as one JSON document and pydantic validates it in one pass:
        full decoding into event models at close to the cost of a plain ``json.loads``."""
        columns = (events.c.position, events.c.event_type, events.c.schema_version, _document(self.dialect))
        parse = self.registry.parse_recorded
        async for rows in self.read_rows(
            after, batch_size=batch_size, until_position=until_position, until_recorded=until_recorded,
            event_types=event_types, columns=columns,
        ):
            yield [parse(event_type, version, doc) for _, event_type, version, doc in rows]

    async def read_rows(
        self,
        after: int = 0,
        *,
        batch_size: int = 1000,
        until_position: int | None = None,
        until_recorded: datetime | None = None,
        event_types: Sequence[str] | None = None,
        columns: Sequence[Any] = tuple(_COLUMNS),
    ) -> AsyncIterator[list[Any]]:
        """Raw rows in position order (keyset pages: memory stays flat however long the log)."""
        if until_recorded is not None and until_recorded.tzinfo is None:
            raise ValueError("until_recorded must be timezone-aware")
        cursor = after
        while True:
            query = select(*columns).where(events.c.position > cursor)
            if until_position is not None:
                query = query.where(events.c.position <= until_position)
            if until_recorded is not None:
                query = query.where(events.c.recorded_at <= until_recorded)
            if event_types:
                query = query.where(events.c.event_type.in_(list(event_types)))
            query = query.order_by(events.c.position).limit(batch_size)
            async with self.engine.connect() as conn:
                rows = (await conn.execute(query)).all()
            if not rows:
                return
            yield rows
            cursor = rows[-1][0]
            if len(rows) < batch_size:
                return

    def decode(self, row: Sequence[Any]) -> RecordedEvent:
        """A stored row to a :class:`RecordedEvent`, upcasting older schema versions."""
        (position, event_id, stream_id, version, event_type, schema_version, occurred_at, recorded_at, source,
         correlation_id, causation_id, payload_text) = row
        payload = self.registry.parse_payload(event_type, schema_version, payload_text)
        return RecordedEvent.model_validate(
            {
                "event_id": event_id,
                "event_type": event_type,
                "schema_version": payload.schema_version,
                "occurred_at": occurred_at,
                "source": source,
                "correlation_id": correlation_id,
                "causation_id": causation_id,
                "payload": payload,
                "stream_id": stream_id,
                "stream_version": version,
                "position": position,
                "recorded_at": recorded_at,
            }
        )
