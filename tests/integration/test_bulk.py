"""``insert_rows`` stores exactly what ``insert(table)`` stores, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import insert, select

from shared.events.bulk import insert_rows
from shared.events.inbox import metadata as inbox_tables
from shared.events.inbox import processed_messages
from shared.events.store import EventStore


async def test_rows_given_as_tuples_read_back_as_rows_inserted_the_usual_way(store: EventStore) -> None:
    await store.create_schema(inbox_tables)
    at = datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=timezone(timedelta(hours=8)))
    with store.transaction() as tx:
        insert_rows(tx.connection, processed_messages, ("consumer", "message_id", "processed_at"),
                          [("c", f"bulk-{i}", at) for i in range(3)])
        insert_rows(tx.connection, processed_messages, ("consumer", "message_id", "processed_at"), [])
        tx.connection.execute(insert(processed_messages),
                                    [{"consumer": "c", "message_id": f"usual-{i}", "processed_at": at} for i in range(3)])
    with store.engine.connect() as conn:
        rows = (conn.execute(select(processed_messages).order_by(processed_messages.c.message_id))).all()
    assert [r.message_id for r in rows] == ["bulk-0", "bulk-1", "bulk-2", "usual-0", "usual-1", "usual-2"]
    assert {r.processed_at for r in rows} == {at}
    assert all(r.processed_at.utcoffset() == timedelta(0) for r in rows)  # kept in UTC, the same instant


async def test_each_rows_own_value_is_converted_whether_or_not_it_repeats_the_previous_rows(store: EventStore) -> None:
    import pytest

    await store.create_schema(inbox_tables)
    first = datetime(2024, 3, 1, 8, tzinfo=timezone(timedelta(hours=8)))
    second = datetime(2024, 3, 1, 9, tzinfo=timezone.utc)
    equal_but_another_object = datetime(2024, 3, 1, 8, tzinfo=timezone(timedelta(hours=8)))
    stamps = [first, first, second, first, equal_but_another_object, second, second]
    with store.transaction() as tx:
        insert_rows(tx.connection, processed_messages, ("consumer", "message_id", "processed_at"),
                          [("c", f"m-{i}", at) for i, at in enumerate(stamps)])
        with pytest.raises(ValueError, match="a row of 2 values for 3 columns"):
            insert_rows(tx.connection, processed_messages, ("consumer", "message_id", "processed_at"), [("c", "x")])
    with store.engine.connect() as conn:
        rows = (conn.execute(select(processed_messages.c.message_id, processed_messages.c.processed_at))).all()
    assert sorted((r[0], r[1]) for r in rows) == sorted((f"m-{i}", at) for i, at in enumerate(stamps))
