"""Saving the projection's changed rows (with its checkpoint, in the caller's transaction) and
loading it back; rebuilding it from the log alone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from services.reporting import tables as t
from services.reporting.projection import ReportState, TownshipYear, apply
from services.reporting.views import EVENT_TYPES, decode_row
from shared.events.store import EventStore
from shared.events.tables import events

PROJECTION = "township-year-v1"


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


def save(conn: Connection, state: ReportState) -> None:
    """Write what changed and the checkpoint (the caller commits both together)."""
    for table, rows in _changed_rows(state).items():
        upsert(conn, table, sorted(rows, key=lambda r: tuple(str(r[c.name]) for c in table.primary_key.columns)))
    upsert(conn, t.checkpoint, [{"name": PROJECTION, "position": state.position}])
    state.touched.clear()


def load(conn: Connection) -> ReportState:
    state = ReportState()
    row = conn.execute(select(t.checkpoint.c.position).where(t.checkpoint.c.name == PROJECTION)).first()
    state.position = int(row[0]) if row else 0
    for r in conn.execute(select(t.township_year)):
        data = dict(r._mapping)
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


def rebuild_now(store: EventStore, on_progress: Callable[[int], None] | None = None) -> ReportState:
    """Throw the read models away and build them again from the log alone, in one transaction."""
    store.create_schema_now(t.metadata)
    state = project_now(store, on_progress=on_progress)
    with store.transaction() as tx:
        for table in t.READ_MODEL_TABLES:
            tx.connection.execute(delete(table))
        save(tx.connection, state)
    return state


async def rebuild(store: EventStore, on_progress: Callable[[int], None] | None = None) -> ReportState:
    """:func:`rebuild_now` in a worker thread (``on_progress`` is called there)."""
    return await asyncio.to_thread(rebuild_now, store, on_progress)
