"""Saving the projection's changed rows (with its checkpoint, in the caller's transaction) and
loading it back; rebuilding it from the log alone, beside the serving read model (blue/green).

A rebuild never touches the tables that serve: it builds a new version of every read-model table
under a building name (``report_township_year_next``...), from the log up to its head, catches up
while the log moves on, and then, in one transaction that holds the log's write lock (so no event
is appended and no live batch is projected meanwhile), applies the last events, drops the serving
tables and renames the new ones into their place. Readers and SQL tools keep the documented names
and see either the old version or the new one, never an empty or half-built one; the live
projection writes into the new version from its next batch on (``report_serving`` names the
version: a live handler that sees it change reloads its state from the new tables)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Integer, MetaData, String, Table, func, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError
from sqlalchemy.schema import DropTable

from services.reporting import tables as t
from services.reporting.projection import ReportState, TownshipYear, apply
from services.reporting.views import EVENT_TYPES, decode_row
from shared.events.store import EventStore
from shared.events.tables import UtcDateTime, events

PROJECTION = "township-year-v1"
BUILDING = "_next"  # the suffix of a read-model table while a rebuild builds it

# Which version of the read models serves: one row per projection, its version counted up by
# every switch. (Kept with the reporting tables, so that whatever creates them creates this too.)
serving = Table(
    "report_serving", t.metadata,
    Column("name", String(100), primary_key=True),
    Column("version", Integer, nullable=False, comment="1 for the first rebuild's tables, then one more each switch"),
    Column("position", BigInteger, nullable=False, comment="the log position the version was switched in at"),
    Column("switched_at", UtcDateTime, nullable=False),
)


def upsert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    keys = [c.name for c in table.primary_key.columns]
    for start in range(0, len(rows), 500):
        stmt = dialect_insert(table).values(rows[start : start + 500])
        stmt = stmt.on_conflict_do_update(index_elements=keys, set_={
            c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys
        })
        conn.execute(stmt)


def _changed_rows(state: ReportState) -> dict[Table, list[dict[str, Any]]]:
    out: dict[Table, list[dict[str, Any]]] = {tbl: [] for tbl in t.READ_MODEL_TABLES}
    for kind, key in state.touched:
        if kind == "township":
            out[t.township_year].append(asdict(state.townships[key]))
        elif kind == "rejection":
            out[t.rejections].append(dict(zip(("programme_year", "township", "reason"), key), registrations=state.rejections[key]))
        elif kind == "subsidy_line":
            persons, fen = state.subsidy_lines[key]
            out[t.subsidy_lines].append(dict(zip(("programme_year", "township", "line"), key), persons=persons, amount_fen=fen))
        elif kind == "disbursed":
            persons, fen = state.disbursed[key]
            out[t.disbursements].append({"programme_year": key[0], "plan_id": key[1], "persons": persons, "amount_fen": fen})
        elif kind == "monthly":
            pol, premium, paid = state.monthly[key]
            out[t.monthly].append(dict(zip(("programme_year", "township", "month"), key), policies=pol,
                                       premium_fen=premium, claims_paid_fen=paid))
        elif kind == "area":
            name, level, parent, position = state.areas[key[0]]
            out[t.areas].append({"code": key[0], "name": name, "level": level, "parent_code": parent,
                                 "registered_position": position,
                                 "aliases": json.dumps(list(state.area_aliases.get(key[0], ())), ensure_ascii=False)})
    return out


def save(conn: Connection, state: ReportState, into: dict[Table, Table] | None = None) -> None:
    """Write what changed and the checkpoint (the caller commits both together); into the serving
    tables, or into the tables ``into`` maps them to (a version being built)."""
    into = into or {}
    for table, rows in _changed_rows(state).items():
        upsert(conn, into.get(table, table),
               sorted(rows, key=lambda r: tuple(str(r[c.name]) for c in table.primary_key.columns)))
    upsert(conn, into.get(t.checkpoint, t.checkpoint), [{"name": PROJECTION, "position": state.position}])
    state.touched.clear()


def serving_version(conn: Connection) -> int:
    """The version of the read models that serves (0: never switched, the tables made at start)."""
    row = conn.execute(select(serving.c.version).where(serving.c.name == PROJECTION)).first()
    return int(row[0]) if row else 0


def load(conn: Connection) -> ReportState:
    state = ReportState()
    row = conn.execute(select(t.checkpoint.c.position).where(t.checkpoint.c.name == PROJECTION)).first()
    state.position = int(row[0]) if row else 0
    for r in conn.execute(select(t.township_year)).mappings():
        data = dict(r)
        state.townships[(data["programme_year"], data["township"])] = TownshipYear(**data)
    for r in conn.execute(select(t.rejections)):
        state.rejections[(r.programme_year, r.township, r.reason)] = r.registrations
    for r in conn.execute(select(t.subsidy_lines)):
        state.subsidy_lines[(r.programme_year, r.township, r.line)] = [r.persons, r.amount_fen]
    for r in conn.execute(select(t.disbursements)):
        state.disbursed[(r.programme_year, r.plan_id)] = [r.persons, r.amount_fen]
    for r in conn.execute(select(t.monthly)):
        state.monthly[(r.programme_year, r.township, r.month)] = [r.policies, r.premium_fen, r.claims_paid_fen]
    for r in conn.execute(select(t.areas).order_by(t.areas.c.registered_position)):
        state.areas[r.code] = (r.name, r.level, r.parent_code, r.registered_position)
        state.area_aliases[r.code] = tuple(json.loads(r.aliases))
    return state


# What the projection reads of each row of the log (a public contract: the ``events`` table).
READ_COLUMNS = (events.c.position, events.c.event_type, events.c.schema_version, events.c.occurred_at, events.c.payload)


def covered_position(conn: Connection, *, until_position: int | None = None,
                     until_recorded: datetime | None = None) -> int:
    """The last position of the log a projection covers: the head, or the head of the prefix up to
    a position, or the last position recorded at or before a time (what the log knew then)."""
    if until_recorded is not None:
        if until_recorded.tzinfo is None:
            raise ValueError("until_recorded must be timezone-aware")
        return int(conn.execute(select(func.coalesce(func.max(events.c.position), 0))
                                .where(events.c.recorded_at <= until_recorded)).scalar_one())
    head = int(conn.execute(select(func.coalesce(func.max(events.c.position), 0))).scalar_one())
    return min(head, until_position) if until_position is not None else head


def project_now(
    store: EventStore,
    *,
    until_position: int | None = None,
    until_recorded: datetime | None = None,
    occurred_before: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
    batch_size: int = 5000,
) -> ReportState:
    """The projection computed from the log, in the caller's thread: everything, or what the log
    knew at a position or a recorded time, or only what had happened before an instant
    (``occurred_at``). Only the event types the projection reads are fetched, in keyset pages of
    ``batch_size`` rows (memory stays flat however long the log); the state's position is the last
    position covered."""
    state = ReportState()
    with store.engine.connect() as conn:
        last = covered_position(conn, until_position=until_position, until_recorded=until_recorded)
    page = store.pager(0, batch_size=batch_size, until_position=last, event_types=EVENT_TYPES, columns=READ_COLUMNS)
    while rows := page():
        for position, event_type, version, occurred_at, payload in rows:
            fact = decode_row(position, event_type, version, occurred_at, payload)
            if fact is None:
                continue
            if occurred_before is not None and fact.occurred_at >= occurred_before:
                continue
            apply(state, fact)
        if on_progress:
            on_progress(rows[-1][0])
    state.position = last
    return state


async def project(
    store: EventStore,
    *,
    until_position: int | None = None,
    until_recorded: datetime | None = None,
    occurred_before: datetime | None = None,
    on_progress: Callable[[int], None] | None = None,
    batch_size: int = 5000,
) -> ReportState:
    """:func:`project_now` in a worker thread (``on_progress`` is called there)."""
    return await asyncio.to_thread(
        lambda: project_now(store, until_position=until_position, until_recorded=until_recorded,
                            occurred_before=occurred_before, on_progress=on_progress, batch_size=batch_size))


def catch_up(store: EventStore, state: ReportState, until: int, *, batch_size: int = 5000,
             on_progress: Callable[[int], None] | None = None) -> None:
    """Fold the log's events after the state's position, up to ``until``, into the state (in keyset
    pages of the types the projection reads); the state's position is then ``until``."""
    page = store.pager(state.position, batch_size=batch_size, until_position=until, event_types=EVENT_TYPES,
                       columns=READ_COLUMNS)
    while rows := page():
        for row in rows:
            fact = decode_row(*row)
            if fact is not None:
                apply(state, fact)
        if on_progress:
            on_progress(rows[-1][0])
    state.position = max(state.position, until)


def building_tables() -> dict[Table, Table]:
    """Each read-model table and its copy under the building name (the same columns and keys)."""
    meta = MetaData()
    return {table: table.to_metadata(meta, name=table.name + BUILDING) for table in t.READ_MODEL_TABLES}


VIEW = "report_county_year"  # tables.county_year_view, on report_township_year
# The switch replaces the tables in the order ``load`` reads them: on PostgreSQL a reader holds each
# table it has read until its transaction ends, and the switch waits for it table by table, in the
# same order (the other order could deadlock the two).
_SWITCH_ORDER = [t.checkpoint, *(table for table in t.READ_MODEL_TABLES if table is not t.checkpoint)]
CATCH_UP_ROUNDS = 20  # rounds without the lock before the last one under it, however fast the log grows
SWITCH_LOCK_TIMEOUT_S = 2.0  # PostgreSQL: how long the switch waits for readers of the serving tables...
SWITCH_ATTEMPTS = 30  # ... before it lets go of the log's write lock and tries again, so many times
_GAVE_WAY = ("55P03", "40P01")  # lock_not_available (the timeout), deadlock_detected


def rebuild_now(store: EventStore, on_progress: Callable[[int], None] | None = None, *,
                batch_size: int = 5000, lock_timeout_s: float = SWITCH_LOCK_TIMEOUT_S) -> ReportState:
    """Build a new version of the read models from the log alone, beside the serving one, and switch
    to it (see the module's docstring); the state returned is the new version's. Memory stays flat
    however long the log: it is read in keyset pages and only the projection's rows are held.
    One rebuild at a time on a database (a second one would throw the first one's tables away).

    On PostgreSQL the switch waits for the transactions reading the serving tables to end (a
    report, a SQL tool's query); it waits at most ``lock_timeout_s`` while it holds the log's write
    lock, then lets it go, so that appends go on, and tries again."""
    store.create_schema_now(t.metadata)
    building = building_tables()
    with store.transaction() as tx:  # what an interrupted rebuild left is thrown away
        for table in building.values():
            tx.connection.execute(DropTable(table, if_exists=True))
            table.create(tx.connection)
    state = project_now(store, on_progress=on_progress, batch_size=batch_size)
    with store.transaction() as tx:
        save(tx.connection, state, building)
    # Catch up while the log moves on (the serving version is projected live meanwhile)...
    for _ in range(CATCH_UP_ROUNDS):
        with store.engine.connect() as conn:
            head = covered_position(conn)
        if head - state.position <= batch_size:
            break
        catch_up(store, state, head, batch_size=batch_size, on_progress=on_progress)
        with store.transaction() as tx:
            save(tx.connection, state, building)
    # ... then the last events and the switch, under the log's write lock: nothing is appended or
    # projected live between the head read here and the commit, so nothing falls between the two.
    for attempt in range(1, SWITCH_ATTEMPTS + 1):
        try:
            with store.transaction() as tx:
                tx.lock()
                _lock_serving(tx.connection, lock_timeout_s)  # before the state moves: a retry starts afresh
                catch_up(store, state, covered_position(tx.connection), batch_size=batch_size, on_progress=on_progress)
                save(tx.connection, state, building)
                _switch(tx.connection, building, state.position)
            return state
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) not in _GAVE_WAY or attempt == SWITCH_ATTEMPTS:
                raise
            time.sleep(lock_timeout_s / 2)
    raise AssertionError("unreachable")


def _lock_serving(conn: Connection, timeout_s: float) -> None:
    """PostgreSQL: take the serving tables for the switch now, waiting at most ``timeout_s`` for
    their readers (in the order ``load`` reads them, the view last). SQLite: nothing to wait for (a
    reader reads its snapshot; the write lock is the log's)."""
    if conn.dialect.name != "postgresql":
        return
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{max(1, round(timeout_s * 1000)):d}ms'")
    names = ", ".join([table.name for table in _SWITCH_ORDER] + [VIEW])
    conn.exec_driver_sql(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")


def _switch(conn: Connection, building: dict[Table, Table], position: int) -> None:
    """Drop the serving tables and rename the built ones into their place, in the caller's
    transaction; count the version up."""
    version = serving_version(conn) + 1
    conn.exec_driver_sql(f"DROP VIEW IF EXISTS {VIEW}")  # SQLite checks a view on a rename
    for table in _SWITCH_ORDER:
        built = building[table]
        conn.execute(DropTable(table, if_exists=True))
        conn.exec_driver_sql(f"ALTER TABLE {built.name} RENAME TO {table.name}")
        if conn.dialect.name == "postgresql":  # the primary key's index keeps its name: give it the table's
            key = inspect(conn).get_pk_constraint(table.name)["name"]
            if key and key != f"{table.name}_pkey":
                conn.exec_driver_sql(f"ALTER TABLE {table.name} RENAME CONSTRAINT {key} TO {table.name}_pkey")
    conn.execute(t.county_year_view)
    upsert(conn, serving, [{"name": PROJECTION, "version": version, "position": position,
                            "switched_at": datetime.now(timezone.utc)}])


async def rebuild(store: EventStore, on_progress: Callable[[int], None] | None = None, *,
                  batch_size: int = 5000, lock_timeout_s: float = SWITCH_LOCK_TIMEOUT_S) -> ReportState:
    """:func:`rebuild_now` in a worker thread (``on_progress`` is called there)."""
    return await asyncio.to_thread(
        lambda: rebuild_now(store, on_progress, batch_size=batch_size, lock_timeout_s=lock_timeout_s))
