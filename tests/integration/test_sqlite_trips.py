"""``shared/events/sqlite_trips.py``: SQLAlchemy's aiosqlite connections run each statement in one
trip to the connection's thread, with the results, counts and errors SQLAlchemy's own cursor gives."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.dialects.sqlite import aiosqlite as sa_aiosqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from shared.events import sqlite_trips
from shared.events.consumer import transient
from shared.events.database import create_engine

meta = MetaData()
things = Table("things", meta, Column("id", Integer, primary_key=True), Column("name", String(20), unique=True))


@pytest.fixture
async def engine(tmp_path: Path) -> Any:
    engine = create_engine(f"sqlite:///{tmp_path / 'trips.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(meta.create_all)
    yield engine
    await engine.dispose()


def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return seen


async def test_statements_give_rows_counts_and_ids_in_one_trip_each(engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert sa_aiosqlite.AsyncAdapt_aiosqlite_connection._cursor_cls is sqlite_trips.OneTripCursor
    async with engine.begin() as conn:
        seen = trips(monkeypatch)
        first = await conn.execute(insert(things).values(name="a"))
        assert first.inserted_primary_key == (1,)  # from the cursor's lastrowid
        many = await conn.execute(insert(things), [{"name": "b"}, {"name": "c"}, {"name": "d"}])
        assert many.rowcount == 3
        changed = await conn.execute(update(things).where(things.c.id > 2).values(name=things.c.name + "!"))
        assert changed.rowcount == 2
        result = await conn.execute(select(things.c.id, things.c.name).order_by(things.c.id))
        assert list(result.keys()) == ["id", "name"]
        assert [tuple(r) for r in result] == [(1, "a"), (2, "b"), (3, "c!"), (4, "d!")]
        raw = await conn.exec_driver_sql("SELECT count(*) AS n FROM things WHERE name LIKE ?", ("%!",))
        assert raw.scalar_one() == 2
        assert seen == ["_run", "_run_many", "_run", "_run", "_run"]  # one trip a statement
        assert (await conn.execute(text("SELECT 1 WHERE 0"))).first() is None


async def test_errors_reach_sqlalchemy_as_its_own_cursor_raises_them(engine: Any, tmp_path: Path) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(things).values(name="a"))
    with pytest.raises(IntegrityError) as unique:
        async with engine.begin() as conn:
            await conn.execute(insert(things).values(name="a"))
    assert isinstance(unique.value.orig, sqlite3.IntegrityError) and not transient(unique.value)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(insert(things), [{"name": "x"}, {"name": "x"}])
    with pytest.raises(OperationalError, match="no such table"):
        async with engine.connect() as conn:
            await conn.execute(text("SELECT * FROM missing"))
    async with engine.connect() as conn:  # the failed batch above stored nothing
        assert (await conn.execute(select(things.c.name))).scalars().all() == ["a"]
    # Another writer holding the lock: "database is locked", which the services treat as transient.
    holder = sqlite3.connect(tmp_path / "trips.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        quick = create_engine(f"sqlite:///{tmp_path / 'trips.db'}")
        with pytest.raises(OperationalError) as locked:
            async with quick.connect() as conn:
                await conn.exec_driver_sql("PRAGMA busy_timeout=50")
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
        assert transient(locked.value)
        await quick.dispose()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_without_the_internals_it_uses_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sa_aiosqlite.AsyncAdapt_aiosqlite_connection, "_cursor_cls", sa_aiosqlite.AsyncAdapt_aiosqlite_cursor)
    monkeypatch.delattr(aiosqlite.Connection, "_execute")
    assert not sqlite_trips.supported()
    assert sqlite_trips.install() is False
    assert sa_aiosqlite.AsyncAdapt_aiosqlite_connection._cursor_cls is sa_aiosqlite.AsyncAdapt_aiosqlite_cursor
