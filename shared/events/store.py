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

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import LargeBinary, MetaData, String, bindparam, cast, func, literal_column, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .base import NAME_MAX_LENGTH, NAME_PATTERN, EventMessage, RecordedEvent
from .catalog import registry as default_registry
from .database import create_engine, write_connection
from .hashing import GENESIS, chain_hash
from .registry import ROW_FIELDS, EventRegistry
from .tables import events, metadata, utc_text

ADVISORY_LOCK_KEY = 0x6775616E68756169 & 0x7FFFFFFFFFFFFFFF  # "guanhuai"
ANY = None  # expected_version meaning "wherever the stream is"
DECODE_SLICE = 100  # events decoded and handed over at a time by ``read_all``
_NAME = re.compile(NAME_PATTERN)

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
_NAMES = tuple(c.name for c in _COLUMNS)
# What ``read_all`` and ``read_stream`` select: the same columns, but on SQLite the payload comes as
# its stored UTF-8 bytes, which the payload's validator parses as they are. As text, the driver
# would decode it to a str (these payloads hold Chinese names, so a wide one) and pydantic-core
# encode it back to UTF-8 to parse it. (PostgreSQL's driver hands over text; a cast to bytea there
# would read backslashes as escapes.)
_SQLITE_READ_COLUMNS = [*_COLUMNS[:-1], cast(events.c.payload, LargeBinary).label("payload")]


_LOG_COLUMN_IDS = frozenset(id(c) for c in (*_COLUMNS, *_SQLITE_READ_COLUMNS))


def _read_columns(dialect: str) -> list[Any]:
    return _SQLITE_READ_COLUMNS if dialect == "sqlite" else _COLUMNS


if _NAMES != ROW_FIELDS:
    raise RuntimeError("the log's columns are not in the order EventRegistry.parse_recorded_rows reads")


class ConcurrencyError(Exception):
    """The stream moved on since the caller read it."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id!r} is at version {actual}, expected {expected}")
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class DuplicateEventError(Exception):
    """Some, not all, of a batch's event ids are stored already: not a retry of the same append."""


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """Events for one stream. Made, the events' stored text is drafted at once (``drafts``):
    everything of a row that does not depend on where it lands in the log. A service makes its
    appends while it decides, before it takes the log's write lock, so that the lock is held only
    for what needs it (positions, versions, the hash chain and the inserts)."""

    stream_id: str
    events: Sequence[EventMessage]
    expected_version: int | None = ANY
    drafts: tuple[_Draft, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked here, once, as the envelope's names are checked when an event is made: the log
        # reads its rows back without checking them again (see ``registry._StoredRow``).
        if not isinstance(self.stream_id, str) or len(self.stream_id) > NAME_MAX_LENGTH or not _NAME.fullmatch(self.stream_id):
            raise ValueError(f"stream id {self.stream_id!r}: 1 to {NAME_MAX_LENGTH} printable characters, no spaces")
        object.__setattr__(self, "drafts", _drafted(self.events))


# An event's stored text apart from its place: event id, occurred_at (canonical UTC text),
# correlation id, causation id (or None), and the payload's JSON as text and as UTF-8 bytes.
_Draft = tuple[str, str, str, "str | None", str, bytes]


def _drafted(events: Sequence[EventMessage]) -> tuple[_Draft, ...]:
    # The outcomes of one input share its time, conversation and id (the same objects; an input
    # recorded with its outcomes is their cause): each is turned into text once, looked up by
    # identity (every object looked up lives in ``events``).
    texts: dict[int, str] = {}

    def text_of(value: Any, convert: Any = str) -> str:
        key = id(value)
        found = texts.get(key)
        if found is None:
            found = texts[key] = convert(value)
        return found

    drafts = []
    for ev in events:
        payload_utf8 = ev.payload.__pydantic_serializer__.to_json(ev.payload)  # model_dump_json's bytes
        drafts.append((
            text_of(ev.event_id), text_of(ev.occurred_at, utc_text), text_of(ev.correlation_id),
            text_of(ev.causation_id) if ev.causation_id else None, payload_utf8.decode(), payload_utf8,
        ))
    return tuple(drafts)


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

    async def lock(self) -> None:
        """Take the log's write lock now (it is taken at the first append otherwise): a handler
        that reads its own state before appending must read it under the lock, so that two
        instances of a service never decide on the same stale state."""
        await self._lock_head()

    async def append(self, stream_id: str, new: Sequence[EventMessage], expected_version: int | None = ANY) -> AppendResult:
        return (await self.append_streams([StreamAppend(stream_id, new, expected_version)]))[0]

    async def append_streams(self, batch: Sequence[StreamAppend]) -> list[AppendResult]:
        head = await self._lock_head()
        conn = self.connection
        ids = [[draft[0] for draft in item.drafts] for item in batch]
        if sum(map(len, ids)) != len({i for item_ids in ids for i in item_ids}):
            raise DuplicateEventError("the same event id appears twice in one append")
        stream_ids = list({item.stream_id for item in batch})
        versions = dict((await conn.execute(_VERSIONS, {"streams": stream_ids})).all()) if stream_ids else {}
        # Optimistic: assume no event is stored yet, and let the unique index on event_id (or a
        # version that moved) say otherwise. Only then look the ids up and plan again without the
        # events already stored: a retried append is already done, not an error.
        sqlite = conn.dialect.name == "sqlite"
        try:
            plan = _Plan(head, batch, ids, versions, {}, sqlite)
            if plan.rows:
                async with conn.begin_nested():
                    await conn.exec_driver_sql(_insert_sql(conn), plan.rows)
        except (IntegrityError, ConcurrencyError):
            stored = await _stored_ids(conn, [i for item_ids in ids for i in item_ids])
            if not stored:
                raise
            plan = _Plan(head, batch, ids, versions, stored, sqlite)
            if plan.rows:
                await conn.exec_driver_sql(_insert_sql(conn), plan.rows)
        if plan.rows:
            self._head = _Head(plan.position, plan.prev, plan.recorded_at)
            self.appended.extend(r[0] for r in plan.rows)
        return plan.results


_VERSIONS = (
    select(events.c.stream_id, func.max(events.c.stream_version))
    .where(events.c.stream_id.in_(bindparam("streams", expanding=True)))
    .group_by(events.c.stream_id)
)


class _Plan:
    """The rows one append will insert: positions, stream versions and chained hashes."""

    def __init__(
        self,
        head: _Head,
        batch: Sequence[StreamAppend],
        ids: list[list[str]],
        versions: dict[str, int],
        stored: dict[str, tuple[int, int]],
        sqlite: bool,
    ) -> None:
        now = datetime.now(timezone.utc)
        self.recorded_at = recorded_at = max(now, head.recorded_at) if head.recorded_at else now
        recorded_text = utc_text(recorded_at)
        versions = dict(versions)
        self.rows: list[tuple[Any, ...]] = []
        self.results: list[AppendResult] = []
        position, prev = head.position, head.hash
        for item, item_ids in zip(batch, ids, strict=True):
            known = [stored[i] for i in item_ids if i in stored]
            if known and len(known) == len(item_ids):
                self.results.append(AppendResult(item.stream_id, [k[0] for k in known], max(k[1] for k in known), True))
                continue
            if known:
                raise DuplicateEventError(f"stream {item.stream_id!r}: some of these events are stored already")
            current = versions.get(item.stream_id, 0)
            if item.expected_version is not None and item.expected_version != current:
                raise ConcurrencyError(item.stream_id, item.expected_version, current)
            first = position + 1
            for version, (draft, ev) in enumerate(zip(item.drafts, item.events, strict=True), start=current + 1):
                position += 1
                event_id, occurred_text, correlation, causation, payload, payload_utf8 = draft
                digest = chain_hash(
                    prev, position, event_id, item.stream_id, version, ev.event_type, ev.schema_version,
                    occurred_text, recorded_text, ev.source, correlation, causation, payload, payload_utf8,
                )
                self.rows.append((
                    position, event_id, item.stream_id, version, ev.event_type, ev.schema_version,
                    occurred_text if sqlite else ev.occurred_at, recorded_text if sqlite else recorded_at,
                    ev.source, correlation, causation, payload, prev, digest,
                ))
                prev = digest
            versions[item.stream_id] = current + len(item.events)
            self.results.append(AppendResult(item.stream_id, list(range(first, position + 1)), versions[item.stream_id]))
        self.position, self.prev = position, prev


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


_STORED = select(events.c.event_id, events.c.position, events.c.stream_version).where(
    events.c.event_id.in_(bindparam("ids", expanding=True))
)


async def _stored_ids(conn: AsyncConnection, ids: list[str]) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        result = await conn.execute(_STORED, {"ids": chunk})
        found.update({r[0]: (r[1], r[2]) for r in result})
    return found


def _bind_value(compiled: Any, name: str, value: Any) -> Any:
    processor = (compiled._bind_processors or {}).get(name)
    return processor(value) if processor else value


class EventStore:
    """The event log on one database. Build it with :meth:`open`; close it with :meth:`close`."""

    def __init__(self, engine: AsyncEngine, registry: EventRegistry = default_registry) -> None:
        self.engine = engine
        self.registry = registry
        self._reader: sqlite3.Connection | None = None
        self._reads: dict[tuple[Any, ...], tuple[str, list[Any], int]] = {}

    @classmethod
    async def open(cls, url: str, *, create: bool = True, registry: EventRegistry = default_registry,
                   sqlite_cache_kib: int | None = None, sqlite_checkpoint_bytes: int | None = None) -> EventStore:
        """``sqlite_cache_kib``, ``sqlite_checkpoint_bytes``: see :func:`.database.create_engine`."""
        store = cls(create_engine(url, sqlite_cache_kib=sqlite_cache_kib, sqlite_checkpoint_bytes=sqlite_checkpoint_bytes),
                    registry)
        if create:
            await store.create_schema()
        return store

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self.engine.dispose()

    def _direct_reader(self) -> sqlite3.Connection | None:
        """A plain sqlite3 connection to this store's file for the decoding reads of :meth:`read_all`,
        used in the caller's thread; None for a database that only the engine can reach (in memory).

        Those reads decode every row in the event loop's thread anyway. Rows that aiosqlite reads in
        its own thread arrive built on the other core, and decoding them there costs about 8% more
        than reading them where they are decoded; a fetch cannot overlap decoding either way, since
        both need the interpreter lock. Each page is one SELECT in autocommit mode, its own snapshot
        of the log, as through the engine."""
        if self._reader is None:
            database = self.engine.url.database
            if self.dialect != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
                return None
            self._reader = sqlite3.connect(database, timeout=30, isolation_level=None, check_same_thread=False)
        return self._reader

    async def create_schema(self, *more: MetaData) -> None:
        """Create the log's tables (and a service's own, passed as ``more``) if missing."""
        async with write_connection(self.engine) as conn, conn.begin():
            if conn.dialect.name == "postgresql":  # services start together: one creates, the others wait
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            for meta in (metadata, *more):
                await conn.run_sync(meta.create_all)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def row_columns(self) -> list[Any]:
        """The log's columns in :data:`ROW_FIELDS` order as this database reads them best: on
        SQLite the payload comes as its stored UTF-8 bytes (see ``_SQLITE_READ_COLUMNS``)."""
        return _read_columns(self.dialect)

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

    async def position_at(self, recorded: datetime) -> int:
        """The last position recorded at or before ``recorded`` (what the log knew then)."""
        if recorded.tzinfo is None:
            raise ValueError("recorded must be timezone-aware")
        async with self.engine.connect() as conn:
            query = select(func.coalesce(func.max(events.c.position), 0)).where(events.c.recorded_at <= recorded)
            return (await conn.execute(query)).scalar_one()

    async def stream_version(self, stream_id: str) -> int:
        async with self.engine.connect() as conn:
            query = select(func.coalesce(func.max(events.c.stream_version), 0)).where(events.c.stream_id == stream_id)
            return (await conn.execute(query)).scalar_one()

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        query = (
            select(*self.row_columns)
            .where(events.c.stream_id == stream_id, events.c.stream_version > after_version)
            .order_by(events.c.stream_version)
        )
        async with self.engine.connect() as conn:
            return self.registry.parse_recorded_rows(await conn.execute(query))

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

        Each row becomes one validated model in a single call into pydantic-core. Pages of
        ``batch_size`` rows are read from the database, but handed over decoded in slices of at
        most :data:`DECODE_SLICE` events: a slice's models are still in the CPU cache when the
        caller works on them (decoding a whole 2,000-row page first costs a third more here)."""
        parse = self.registry.parse_recorded_rows
        step = min(batch_size, DECODE_SLICE)
        async for rows in self.read_rows(
            after, batch_size=batch_size, until_position=until_position, until_recorded=until_recorded,
            event_types=event_types, columns=self.row_columns, direct=True,
        ):
            for start in range(0, len(rows), step):
                yield parse(rows[start : start + step])

    def _read_statement(self, after: int, batch_size: int, until_position: int | None,
                        until_recorded: datetime | None, event_types: Sequence[str] | None,
                        columns: Sequence[Any]) -> tuple[str, list[Any], int]:
        """The page query of :meth:`read_rows` in the driver's own form: its SQL, its parameter
        values, and where among them the page's starting position goes. A tail with no bounds (the
        relay's, polled many times a second) is compiled once per store and column list."""
        bounded = until_position is not None or until_recorded is not None or bool(event_types)
        ids = tuple(id(c) for c in columns)
        # Only the log's own column objects, which live as long as the module, are keyed by identity.
        key = None if bounded or not _LOG_COLUMN_IDS.issuperset(ids) else (batch_size, ids)
        cached = self._reads.get(key) if key is not None else None
        if cached is None:
            query = select(*columns).where(events.c.position > bindparam("after", value=after))
            if until_position is not None:
                query = query.where(events.c.position <= until_position)
            if until_recorded is not None:
                query = query.where(events.c.recorded_at <= until_recorded)
            sqlite = self.dialect == "sqlite"
            if event_types:
                # SQLite would pick the event_type index and then, for every page, collect and sort all
                # later rows of those types (a temporary B-tree): quadratic in the log's length. The
                # unary + keeps it on the position (primary key) order, so a page costs its own rows.
                column = literal_column("+event_type", String) if sqlite else events.c.event_type
                query = query.where(column.in_(list(event_types)))
            query = query.order_by(events.c.position).limit(batch_size)
            # Compiled once, then run through the driver directly: the rows are read as the database
            # gives them (no per-row result processing), which is most of the cost of a long replay.
            compiled = query.compile(dialect=self.engine.dialect, compile_kwargs={"render_postcompile": True})
            sql, names = str(compiled), list(compiled.positiontup or ())
            after_index = names.index("after")
            bound = compiled.construct_params()
            values = [_bind_value(compiled, name, bound[name]) for name in names]
            cached = (sql, values, after_index)
            if key is not None:
                self._reads[key] = cached
        sql, values, after_index = cached
        return sql, list(values), after_index

    async def read_rows(
        self,
        after: int = 0,
        *,
        batch_size: int = 1000,
        until_position: int | None = None,
        until_recorded: datetime | None = None,
        event_types: Sequence[str] | None = None,
        columns: Sequence[Any] = tuple(_COLUMNS),
        direct: bool = False,
    ) -> AsyncIterator[list[Any]]:
        """Raw rows in position order, in keyset pages so memory stays flat however long the log.
        A row is a plain sequence of the ``columns`` asked for, as the driver gives them.

        The next page is fetched while the caller works on this one (the database driver runs in
        its own thread). With ``direct``, an SQLite file is read page by page in the caller's
        thread instead (see :meth:`_direct_reader`), which blocks the event loop for a page's read."""
        if until_recorded is not None and until_recorded.tzinfo is None:
            raise ValueError("until_recorded must be timezone-aware")
        sql, values, after_index = self._read_statement(after, batch_size, until_position, until_recorded, event_types,
                                                        columns)
        sqlite = self.dialect == "sqlite"
        reader = self._direct_reader() if direct and sqlite else None

        async def page(cursor: int) -> list[Any]:
            values[after_index] = cursor
            if reader is not None:
                try:
                    return reader.execute(sql, tuple(values)).fetchall()
                except sqlite3.Error as exc:
                    raise DBAPIError.instance(sql, tuple(values), exc, sqlite3.Error) from exc
            async with self.engine.connect() as conn:
                if sqlite:  # aiosqlite hands over plain tuples; no Row object per row
                    driver = (await conn.get_raw_connection()).driver_connection
                    try:
                        return list(await driver.execute_fetchall(sql, tuple(values)))
                    except sqlite3.Error as exc:  # raised past SQLAlchemy: wrap it as SQLAlchemy would
                        raise DBAPIError.instance(sql, tuple(values), exc, sqlite3.Error) from exc
                return list((await conn.exec_driver_sql(sql, tuple(values))).all())

        rows = await page(after)
        while rows:
            following = asyncio.ensure_future(page(rows[-1][0])) if len(rows) == batch_size and reader is None else None
            try:
                yield rows
            except BaseException:
                if following:
                    following.cancel()
                raise
            if following:
                rows = await following
            else:
                rows = await page(rows[-1][0]) if len(rows) == batch_size else []
