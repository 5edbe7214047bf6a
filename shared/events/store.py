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

The core is synchronous (SQLAlchemy Core on a sync engine): a writer's whole transaction is one
plain function, :meth:`EventStore.write` runs it in a worker thread, and the async methods
(``append``, ``read_all``...) are that core run the same way, for the services' event loops.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, LargeBinary, MetaData, String, bindparam, cast, func, literal_column, select, text
from sqlalchemy.exc import IntegrityError

from .base import NAME_MAX_LENGTH, NAME_PATTERN, EventMessage, RecordedEvent
from .catalog import registry as default_registry
from .database import create_engine, write_connection
from .hashing import GENESIS, chain_hash
from .registry import ROW_FIELDS, EventRegistry
from .tables import events, metadata, utc_text

ADVISORY_LOCK_KEY = 0x6775616E68756169 & 0x7FFFFFFFFFFFFFFF  # "guanhuai"
ANY = None  # expected_version meaning "wherever the stream is"
T = TypeVar("T")
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
    drafts = []
    for ev in events:
        payload_utf8 = ev.payload.model_dump_json().encode()
        drafts.append((
            str(ev.event_id), utc_text(ev.occurred_at), str(ev.correlation_id),
            str(ev.causation_id) if ev.causation_id else None, payload_utf8.decode(), payload_utf8,
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

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._head: _Head | None = None
        self.appended: list[int] = []

    def _lock_head(self) -> _Head:
        if self._head is None:
            if self.connection.dialect.name == "postgresql":
                self.connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            row = (
                self.connection.execute(
                    select(events.c.position, events.c.hash, events.c.recorded_at)
                    .order_by(events.c.position.desc())
                    .limit(1)
                )
            ).first()
            self._head = _Head(row[0], row[1], row[2]) if row else _Head(0, GENESIS, None)
        return self._head

    def lock(self) -> None:
        """Take the log's write lock now (it is taken at the first append otherwise): a handler
        that reads its own state before appending must read it under the lock, so that two
        instances of a service never decide on the same stale state."""
        self._lock_head()

    def append(self, stream_id: str, new: Sequence[EventMessage], expected_version: int | None = ANY) -> AppendResult:
        return self.append_streams([StreamAppend(stream_id, new, expected_version)])[0]

    def append_streams(self, batch: Sequence[StreamAppend]) -> list[AppendResult]:
        head = self._lock_head()
        conn = self.connection
        ids = [[draft[0] for draft in item.drafts] for item in batch]
        if sum(map(len, ids)) != len({i for item_ids in ids for i in item_ids}):
            raise DuplicateEventError("the same event id appears twice in one append")
        stream_ids = list({item.stream_id for item in batch})
        versions = {r[0]: r[1] for r in conn.execute(_VERSIONS, {"streams": stream_ids})} if stream_ids else {}
        # Optimistic: assume no event is stored yet, and let the unique index on event_id (or a
        # version that moved) say otherwise. Only then look the ids up and plan again without the
        # events already stored: a retried append is already done, not an error.
        sqlite = conn.dialect.name == "sqlite"
        try:
            plan = _Plan(head, batch, ids, versions, {}, sqlite)
            if plan.rows:
                with conn.begin_nested():
                    _insert(conn, plan.rows)
        except (IntegrityError, ConcurrencyError):
            stored = _stored_ids(conn, [i for item_ids in ids for i in item_ids])
            if not stored:
                raise
            plan = _Plan(head, batch, ids, versions, stored, sqlite)
            if plan.rows:
                _insert(conn, plan.rows)
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
_insert_cache: dict[str, tuple[str, bool]] = {}


def _insert(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert the planned rows (tuples in ``_INSERT_ORDER``, values already in stored form) with
    the INSERT compiled once per dialect, in the driver's own parameter style: positional drivers
    (sqlite3) take the tuples as they are, named ones (psycopg) a mapping per row."""
    name = conn.dialect.name
    if name not in _insert_cache:
        compiled = events.insert().values({c: bindparam(c) for c in _INSERT_ORDER}).compile(dialect=conn.dialect)
        positional = compiled.positional
        if positional and list(compiled.positiontup or ()) != list(_INSERT_ORDER):
            raise RuntimeError("unexpected parameter order for the events insert")
        _insert_cache[name] = (str(compiled), positional)
    sql, positional = _insert_cache[name]
    conn.exec_driver_sql(sql, rows if positional else [dict(zip(_INSERT_ORDER, row, strict=True)) for row in rows])


_STORED = select(events.c.event_id, events.c.position, events.c.stream_version).where(
    events.c.event_id.in_(bindparam("ids", expanding=True))
)


def _stored_ids(conn: Connection, ids: list[str]) -> dict[str, tuple[int, int]]:
    found: dict[str, tuple[int, int]] = {}
    for start in range(0, len(ids), 5000):
        chunk = ids[start : start + 5000]
        found.update({r[0]: (r[1], r[2]) for r in conn.execute(_STORED, {"ids": chunk})})
    return found


class EventStore:
    """The event log on one database. Build it with :meth:`open`; close it with :meth:`close`.

    Synchronous at its core: :meth:`transaction` and :meth:`page_rows` run in the caller's thread.
    An event loop reaches them through :meth:`write` / :meth:`read` (a function run in a worker
    thread) and the async methods below, which do just that."""

    def __init__(self, engine: Engine, registry: EventRegistry = default_registry) -> None:
        self.engine = engine
        self.registry = registry

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
        await asyncio.to_thread(self.engine.dispose)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def row_columns(self) -> list[Any]:
        """The log's columns in :data:`ROW_FIELDS` order as this database reads them best: on
        SQLite the payload comes as its stored UTF-8 bytes (see ``_SQLITE_READ_COLUMNS``)."""
        return _read_columns(self.dialect)

    # -- the synchronous core ------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """One write transaction, committed when the block ends (rolled back on an exception)."""
        with write_connection(self.engine) as conn, conn.begin():
            yield Transaction(conn)

    def create_schema_now(self, *more: MetaData) -> None:
        with write_connection(self.engine) as conn, conn.begin():
            if conn.dialect.name == "postgresql":  # services start together: one creates, the others wait
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            for meta in (metadata, *more):
                meta.create_all(conn)

    def _scalar(self, query: Any) -> Any:
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    # -- for an event loop: the core in a worker thread -------------------------------------------
    async def write(self, work: Callable[[Transaction], T]) -> T:
        """Run ``work(tx)`` in a worker thread, in one write transaction on the log, committed when
        it returns (rolled back if it raises): a batch's events and the service's own rows at once."""
        def run() -> T:
            with self.transaction() as tx:
                return work(tx)
        return await asyncio.to_thread(run)

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work(conn)`` in a worker thread on a connection of its own (no write lock)."""
        def run() -> T:
            with self.engine.connect() as conn:
                return work(conn)
        return await asyncio.to_thread(run)

    async def create_schema(self, *more: MetaData) -> None:
        """Create the log's tables (and a service's own, passed as ``more``) if missing."""
        await asyncio.to_thread(self.create_schema_now, *more)

    async def append(self, stream_id: str, new: Sequence[EventMessage], expected_version: int | None = ANY) -> AppendResult:
        return await self.write(lambda tx: tx.append(stream_id, new, expected_version))

    async def append_streams(self, batch: Sequence[StreamAppend]) -> list[AppendResult]:
        return await self.write(lambda tx: tx.append_streams(batch))

    # -- reading -----------------------------------------------------------------------------
    async def head_position(self) -> int:
        return await asyncio.to_thread(self._scalar, select(func.coalesce(func.max(events.c.position), 0)))

    async def position_at(self, recorded: datetime) -> int:
        """The last position recorded at or before ``recorded`` (what the log knew then)."""
        if recorded.tzinfo is None:
            raise ValueError("recorded must be timezone-aware")
        query = select(func.coalesce(func.max(events.c.position), 0)).where(events.c.recorded_at <= recorded)
        return await asyncio.to_thread(self._scalar, query)

    async def stream_version(self, stream_id: str) -> int:
        query = select(func.coalesce(func.max(events.c.stream_version), 0)).where(events.c.stream_id == stream_id)
        return await asyncio.to_thread(self._scalar, query)

    async def read_stream(self, stream_id: str, after_version: int = 0) -> list[RecordedEvent]:
        query = (
            select(*self.row_columns)
            .where(events.c.stream_id == stream_id, events.c.stream_version > after_version)
            .order_by(events.c.stream_version)
        )
        return await self.read(lambda conn: self.registry.parse_recorded_rows(conn.execute(query).all()))

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

        Pages of ``batch_size`` rows are read from the database, but handed over decoded in slices
        of at most :data:`DECODE_SLICE` events: a slice's models are still in the CPU cache when the
        caller works on them (decoding a whole 2,000-row page first costs a third more here)."""
        parse = self.registry.parse_recorded_rows
        step = min(batch_size, DECODE_SLICE)
        async for rows in self.read_rows(
            after, batch_size=batch_size, until_position=until_position, until_recorded=until_recorded,
            event_types=event_types, columns=self.row_columns,
        ):
            for start in range(0, len(rows), step):
                yield parse(rows[start : start + step])

    def iter_all(self, after: int = 0, *, batch_size: int = 1000, until_position: int | None = None,
                 until_recorded: datetime | None = None, event_types: Sequence[str] | None = None,
                 ) -> Iterator[list[RecordedEvent]]:
        """:meth:`read_all` in the caller's thread."""
        parse = self.registry.parse_recorded_rows
        step = min(batch_size, DECODE_SLICE)
        page = self.pager(after, batch_size=batch_size, until_position=until_position, until_recorded=until_recorded,
                          event_types=event_types, columns=self.row_columns)
        while rows := page():
            for start in range(0, len(rows), step):
                yield parse(rows[start : start + step])

    def pager(
        self,
        after: int = 0,
        *,
        batch_size: int = 1000,
        until_position: int | None = None,
        until_recorded: datetime | None = None,
        event_types: Sequence[str] | None = None,
        columns: Sequence[Any] = tuple(_COLUMNS),
    ) -> Callable[[], list[Any]]:
        """A function that returns the next page of raw rows in position order each time it is
        called (an empty list when there is nothing after the last row it returned: called again
        later, it goes on from there, so a tail keeps one), in keyset pages so memory stays flat
        however long the log. A row is a plain sequence of the ``columns`` asked for, as the driver gives them.
        Each page is one SELECT on a connection of its own: its own snapshot of the log."""
        if until_recorded is not None and until_recorded.tzinfo is None:
            raise ValueError("until_recorded must be timezone-aware")
        query = select(*columns).where(events.c.position > bindparam("after", value=0))
        if until_position is not None:
            query = query.where(events.c.position <= until_position)
        if until_recorded is not None:
            query = query.where(events.c.recorded_at <= until_recorded)
        if event_types:
            # SQLite would pick the event_type index and then, for every page, collect and sort all
            # later rows of those types (a temporary B-tree): quadratic in the log's length. The
            # unary + keeps it on the position (primary key) order, so a page costs its own rows.
            column = literal_column("+event_type", String) if self.dialect == "sqlite" else events.c.event_type
            query = query.where(column.in_(list(event_types)))
        query = query.order_by(events.c.position).limit(batch_size)
        # Compiled once, then run as driver SQL: rows come as the database gives them (no per-row
        # result processing, which is most of the cost of a long replay).
        sql, params, positional, after_index = _driver_statement(self.engine, query)
        state = {"after": after}

        def next_page() -> list[Any]:
            if positional:
                params[after_index] = state["after"]
                bound: Any = tuple(params)
            else:
                params["after"] = state["after"]
                bound = dict(params)
            with self.engine.connect() as conn:
                rows = list(conn.exec_driver_sql(sql, bound).all())
            if rows:
                state["after"] = rows[-1][0]
            return rows

        return next_page

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
        """:meth:`pager`'s pages for an event loop: each read in a worker thread, the next one
        while the caller works on this one."""
        page = self.pager(after, batch_size=batch_size, until_position=until_position, until_recorded=until_recorded,
                          event_types=event_types, columns=columns)
        rows = await asyncio.to_thread(page)
        while rows:
            following = asyncio.ensure_future(asyncio.to_thread(page)) if len(rows) == batch_size else None
            try:
                yield rows
            except BaseException:
                if following is not None:
                    following.cancel()
                raise
            rows = await following if following is not None else []


def _driver_statement(engine: Engine, query: Any) -> tuple[str, Any, bool, int]:
    """``query`` as the driver's SQL and its parameters, each value bound as SQLAlchemy would bind
    it (a time becomes the log's stored text on SQLite), with where the ``after`` parameter goes."""
    dialect = engine.dialect
    compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    bound = compiled.construct_params()
    values = {}
    for name, value in bound.items():
        param = compiled.binds.get(name)
        processor = param.type.bind_processor(dialect) if param is not None else None
        values[name] = processor(value) if processor is not None else value
    if compiled.positional:
        names = list(compiled.positiontup or ())
        return str(compiled), [values[n] for n in names], True, names.index("after")
    return str(compiled), values, False, -1
