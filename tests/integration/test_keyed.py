"""Keyed look-ups (``shared/events/keyed.py``) on SQLite and PostgreSQL: the driver-level SQL on
SQLite finds exactly what SQLAlchemy's own ``IN`` finds, for any number of keys, and the inbox
answers "which of these are handled" through it."""

from __future__ import annotations

import random
from datetime import datetime, timezone

from sqlalchemy import Column, Integer, MetaData, PrimaryKeyConstraint, String, Table, select

from shared.events import keyed
from shared.events.inbox import already_processed, mark_processed
from shared.events.inbox import metadata as inbox_tables
from shared.events.keyed import rows_by_year, select_where_in
from shared.events.store import EventStore
from shared.events.tables import UtcDateTime

metadata = MetaData()
people = Table(
    "test_keyed_people", metadata,
    Column("year", Integer, nullable=False),
    Column("person", String(18), nullable=False),
    Column("note", String(50), nullable=True),
    Column("seen_at", UtcDateTime, nullable=True),
    PrimaryKeyConstraint("year", "person"),
)
SEEN = datetime(2023, 5, 1, 8, 30, tzinfo=timezone.utc)


async def test_what_is_found_is_what_sqlalchemys_in_finds(store: EventStore) -> None:
    await store.create_schema(metadata)
    rows = [{"year": 2022 + n % 3, "person": f"P{n:05d}", "note": None if n % 7 == 0 else f"n{n}", "seen_at": SEEN}
            for n in range(1500)]
    with store.transaction() as tx:
        tx.connection.execute(people.insert(), rows)
    rng = random.Random(3)
    c = people.c
    with store.engine.connect() as conn:
        for count in (1, 2, 7, 8, 9, 31, 32, 33, 127, 129, 499, 500):
            keys = sorted(rng.sample([f"P{n:05d}" for n in range(1700)], count))  # some not there
            keys[-1:] = [keys[0]] if count > 2 else keys[-1:]  # and a key twice
            found = select_where_in(conn, (c.year, c.person, c.note), c.year, 2023, c.person, keys)
            expected = (conn.execute(select(c.year, c.person, c.note).where(c.year == 2023,
                                                                              c.person.in_(keys)))).all()
            assert sorted(tuple(r) for r in found) == sorted(tuple(r) for r in expected), count
        assert select_where_in(conn, (c.person,), c.year, 2023, c.person, []) == []
        # A column SQLAlchemy converts on the way out (text to an aware datetime on SQLite) is converted.
        dated = select_where_in(conn, (c.person, c.seen_at), c.year, 2022, c.person, ["P00000", "P00003"])
        assert sorted(tuple(r) for r in dated) == [("P00000", SEEN), ("P00003", SEEN)]
        # Many keys, by year, in chunks.
        wanted = {(2022 + n % 3, f"P{n:05d}") for n in range(0, 1500, 2)} | {(2030, "nobody")}
        by_year = rows_by_year(conn, c.year, c.person, wanted, c.note)
        assert sorted((r[0], r[1], r[2]) for r in by_year) == sorted(
            (r["year"], r["person"], r["note"]) for r in rows if (r["year"], r["person"]) in wanted)
        # Compared with a value SQLAlchemy converts on the way in, or with NULL: still what its IN finds.
        assert [tuple(r) for r in select_where_in(conn, (c.person,), c.seen_at, SEEN, c.person, ["P00001"])] \
            == [("P00001",)]
        assert sorted(tuple(r) for r in select_where_in(conn, (c.person,), c.note, None, c.person,
                                                              ["P00000", "P00001", "P00007"])) == [("P00000",), ("P00007",)]
    if store.dialect == "sqlite":  # the driver-level path was taken, with a handful of statements made once each
        selected = tuple((people.name, name) for name in ("year", "person", "note"))
        sizes = {key[-1] for key, sql in keyed._statements.items() if sql is not None and key[1] == selected}
        assert sizes == {8, 32, 128, 500}


async def test_the_inbox_says_which_inputs_are_handled(store: EventStore) -> None:
    await store.create_schema(inbox_tables)
    handled = [f"id-{n}" for n in range(0, 1200, 3)]
    with store.transaction() as tx:
        mark_processed(tx.connection, "c1", handled)
        mark_processed(tx.connection, "c2", ["id-1"])
    with store.engine.connect() as conn:
        asked = [f"id-{n}" for n in range(1200)]
        assert already_processed(conn, "c1", asked) == set(handled)  # more than one chunk of keys
        assert already_processed(conn, "c2", asked[:5]) == {"id-1"}
        assert already_processed(conn, "c3", asked[:5]) == set()
        assert already_processed(conn, "c1", []) == set()
