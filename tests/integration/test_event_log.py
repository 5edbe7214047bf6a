"""The event log against real SQLite and PostgreSQL: the same tests on both."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import text

from shared.events import DomainEvent, EventMessage
from shared.events.audit import verify_chain
from shared.events.enrollment import HouseholdRegistered
from shared.events.store import ConcurrencyError, DuplicateEventError, EventStore, StreamAppend
from tests.support.events import household, target


async def all_events(store: EventStore, **kw):  # type: ignore[no-untyped-def]
    return [e async for batch in store.read_all(**kw) for e in batch]


async def test_appends_to_a_new_stream_and_reads_it_back_equal(store: EventStore) -> None:
    sent = [target("chengguan"), target("xuefeng", 407, 307)]
    result = await store.append("targets-2020", sent, expected_version=0)
    assert result.positions == [1, 2] and result.last_version == 2 and not result.already_stored

    back = await store.read_stream("targets-2020")
    assert [e.event_id for e in back] == [e.event_id for e in sent]
    assert [e.payload for e in back] == [e.payload for e in sent]
    assert [e.stream_version for e in back] == [1, 2]
    assert back[0].occurred_at == sent[0].occurred_at
    assert back[0].recorded_at.tzinfo is not None


@pytest.mark.parametrize("bad", ["", "targets 2020", "targets\t2020", "x" * 201, "line\nbreak", "trailing\n"])
async def test_a_stream_id_that_is_no_name_is_refused_before_anything_is_stored(store: EventStore, bad: str) -> None:
    with pytest.raises(ValueError, match="stream id"):
        await store.append(bad, [target()])
    assert await store.head_position() == 0
    await store.append("区-2020", [target()])  # any printable characters, Chinese too
    assert [e.stream_id for e in await store.read_stream("区-2020")] == ["区-2020"]


async def test_refuses_a_stale_expected_version_and_stores_nothing_of_that_append(store: EventStore) -> None:
    await store.append("targets-2020", [target()], expected_version=0)
    other, stale = target("hanxian", 605, 455), target("shaxi", 287, 187)
    with pytest.raises(ConcurrencyError) as info:
        await store.append_streams([StreamAppend("targets-2021", [other], 0), StreamAppend("targets-2020", [stale], 0)])
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert await store.head_position() == 1
    assert await store.read_stream("targets-2021") == []


async def test_treats_an_event_id_already_stored_as_already_done(store: EventStore) -> None:
    sent = [household("H1"), household("H1b")]
    first = await store.append("household-H1", sent, expected_version=0)
    again = await store.append("household-H1", sent, expected_version=0)
    assert again.already_stored and again.positions == first.positions
    assert await store.head_position() == 2


async def test_refuses_a_batch_where_only_some_events_are_already_stored(store: EventStore) -> None:
    stored = household("H1")
    await store.append("household-H1", [stored], expected_version=0)
    with pytest.raises(DuplicateEventError):
        await store.append("household-H1", [stored, household("H2")], expected_version=1)
    assert await store.head_position() == 1


async def test_gives_every_event_a_gap_free_global_position_across_streams(store: EventStore) -> None:
    for n in range(5):
        await store.append(f"s-{n % 2}", [target(f"t{n}")])
    events = await all_events(store, batch_size=2)
    assert [e.position for e in events] == [1, 2, 3, 4, 5]
    assert [e.stream_id for e in events] == ["s-0", "s-1", "s-0", "s-1", "s-0"]
    assert [e.stream_version for e in events] == [1, 1, 2, 2, 3]


async def test_reads_after_a_position_and_up_to_a_position(store: EventStore) -> None:
    await store.append("s", [target(f"t{n}") for n in range(6)])
    assert [e.position for e in await all_events(store, after=2, until_position=5, batch_size=2)] == [3, 4, 5]


async def test_reads_what_the_log_knew_at_a_recorded_time(store: EventStore) -> None:
    await store.append("s", [target("early")])
    await asyncio.sleep(0.01)
    cut = datetime.now(timezone.utc)
    await asyncio.sleep(0.01)
    await store.append("s", [target("late")])
    known = await all_events(store, until_recorded=cut)
    assert [e.payload.township for e in known] == ["early"]


async def test_reads_only_the_event_types_asked_for(store: EventStore) -> None:
    await store.append("s", [target("a"), household("H1"), target("b")])
    assert [e.event_type for e in await all_events(store, event_types=["HouseholdRegistered"])] == ["HouseholdRegistered"]


async def test_reads_back_payload_text_exactly_through_every_read(store: EventStore) -> None:
    # Chinese text, a backslash, quotes and a character outside the BMP: SQLite hands the payload
    # over as its UTF-8 bytes, PostgreSQL as text; both must give back what was stored.
    name = '林\\"秀"\\u00e9 😀'
    sent = household("H-text")
    members = [sent.payload.members[0].model_copy(update={"name": name}), *sent.payload.members[1:]]
    sent = sent.model_copy(update={"payload": sent.payload.model_copy(update={"members": members})})
    await store.append("household-H-text", [sent, target()])
    everything = await all_events(store)
    assert everything[0].payload.members[0].name == name
    assert everything[0].payload == sent.payload
    assert (await store.read_stream("household-H-text"))[0].payload == sent.payload


async def test_the_sync_pages_and_the_async_reads_see_the_same_log(db_url: str) -> None:
    """One read path underneath (``pager``): the async pages, the sync decoding iterator and the
    async decoding reads agree, page boundaries and filters included."""
    store = await EventStore.open(db_url)
    try:
        await store.append_streams([StreamAppend(f"s{n}", [target(f"t{n}"), household(f"H{n}")]) for n in range(30)])
        page = store.pager(0, batch_size=7)
        synced = [r for rows in iter(page, []) for r in rows]
        pooled = [r async for rows in store.read_rows(0, batch_size=7) for r in rows]
        assert synced == pooled and [r[0] for r in synced] == list(range(1, 61))
        assert page() == []  # finished stays finished
        assert [e.position for e in await all_events(store, batch_size=7)] == list(range(1, 61))
        assert [e.position for batch in store.iter_all(batch_size=7) for e in batch] == list(range(1, 61))
        assert [e.position for e in await all_events(store, after=50, event_types=["TownshipTargetSet"])] == [51, 53, 55, 57, 59]
        at_20 = next(e.recorded_at for e in await all_events(store) if e.position == 20)
        bounded = [e.position for batch in store.iter_all(until_recorded=at_20, until_position=40) for e in batch]
        assert bounded == list(range(1, bounded[-1] + 1)) and 20 <= bounded[-1] <= 40
    finally:
        await store.close()


async def test_refuses_update_and_delete_of_log_rows(store: EventStore) -> None:
    await store.append("s", [target()])
    for sql in ("UPDATE events SET source = 'forged'", "DELETE FROM events"):
        with pytest.raises(Exception, match="append-only"):
            with store.engine.begin() as conn:
                conn.execute(text(sql))
    assert (await store.read_stream("s"))[0].source == "county-test"


async def test_rolls_back_service_rows_and_events_together(store: EventStore) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("CREATE TABLE handled (input_id VARCHAR(36) PRIMARY KEY)"))
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.append("s", [target()])
            tx.connection.execute(text("INSERT INTO handled VALUES ('x')"))
            raise RuntimeError("crash before commit")
    assert await store.head_position() == 0
    with store.engine.connect() as conn:
        assert (conn.execute(text("SELECT count(*) FROM handled"))).scalar_one() == 0


class HouseholdRegisteredV1(DomainEvent):
    """The first county form, as it was written to the log before version 2."""

    event_type: ClassVar[str] = "HouseholdRegistered"
    schema_version: ClassVar[int] = 1

    household_id: str
    programme_year: int
    township: str
    category: str
    payer: str
    members: list[dict]
    consent_date: date
    renewal: bool = False


async def test_upcasts_an_event_stored_with_an_older_schema_version(store: EventStore) -> None:
    current = household("H9").payload
    old = HouseholdRegisteredV1(
        household_id="H9", programme_year=2024, township="chengguan", category="general", payer="self",
        members=[m.model_dump(mode="json") for m in current.members], consent_date=date(2024, 3, 1),
    )
    await store.append("household-H9", [EventMessage.new(old, source="county-2019")])
    (back,) = await store.read_stream("household-H9")
    assert isinstance(back.payload, HouseholdRegistered)
    assert back.schema_version == 2
    assert back.payload.paid_on == date(2024, 3, 1) and back.payload.units == 1


async def test_hash_chain_verifies_and_names_the_first_altered_row(store: EventStore) -> None:
    await store.append("s", [target(f"t{n}") for n in range(5)])
    assert (await verify_chain(store)).ok and (await verify_chain(store)).checked == 5
    await tamper(store, "UPDATE events SET payload = replace(payload, 't2', 'tX') WHERE position = 3")
    result = await verify_chain(store)
    assert not result.ok and result.first_bad_position == 3 and result.checked == 2


async def tamper(store: EventStore, sql: str) -> None:
    """Alter the log as someone with database rights would: drop the guard, then change a row."""
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.execute(text("DROP TRIGGER events_no_update"))
            conn.execute(text("DROP TRIGGER events_no_delete"))
        else:
            conn.execute(text("DROP TRIGGER events_append_only ON events"))
        conn.execute(text(sql))


async def test_hash_chain_detects_a_deleted_row(store: EventStore) -> None:
    await store.append("s", [target(f"t{n}") for n in range(4)])
    await tamper(store, "DELETE FROM events WHERE position = 2")
    result = await verify_chain(store)
    assert result.first_bad_position == 2 and "missing" in (result.problem or "")


async def test_sqlite_log_is_in_wal_mode_and_durable_on_power_loss(tmp_path) -> None:  # type: ignore[no-untyped-def]
    store = await EventStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    with store.engine.connect() as conn:
        assert (conn.exec_driver_sql("PRAGMA journal_mode")).scalar_one() == "wal"
        assert (conn.exec_driver_sql("PRAGMA synchronous")).scalar_one() == 2  # FULL
    await store.close()


async def test_tailing_reader_sees_every_event_exactly_once_under_concurrent_writers(db_url: str) -> None:
    writers, batches, per_batch = 6, 15, 7
    store = await EventStore.open(db_url)
    seen: list[int] = []
    done = asyncio.Event()

    async def write(w: int) -> None:
        for b in range(batches):
            await store.append(f"writer-{w}", [target(f"w{w}b{b}e{e}") for e in range(per_batch)])
            await asyncio.sleep(0)

    async def tail() -> None:
        checkpoint = 0
        while True:
            finished = done.is_set()
            async for batch in store.read_all(after=checkpoint, batch_size=10):
                seen.extend(e.position for e in batch)
                checkpoint = batch[-1].position
            if finished:
                return
            await asyncio.sleep(0.002)

    tailer = asyncio.create_task(tail())
    await asyncio.gather(*(write(w) for w in range(writers)))
    done.set()
    await tailer
    total = writers * batches * per_batch
    assert seen == list(range(1, total + 1))
    assert (await verify_chain(store)).checked == total
    await store.close()


async def test_a_pager_kept_as_a_tail_goes_on_from_its_last_row(store) -> None:  # type: ignore[no-untyped-def]
    # The relay keeps one pager: every call starts after the last row it returned, also once it
    # has run dry and the log has grown since.
    await store.append("s-1", [target() for _ in range(5)])
    tail = store.pager(0, batch_size=2)
    assert [[r[0] for r in tail()] for _ in range(4)] == [[1, 2], [3, 4], [5], []]
    await store.append("s-1", [target(), target()])
    assert [r[0] for r in tail()] == [6, 7] and tail() == []
    again = [r async for rows in store.read_rows(3, batch_size=2) for r in rows]
    assert [r[0] for r in again] == [4, 5, 6, 7]
    bounded = [r async for rows in store.read_rows(1, batch_size=2, until_position=4) for r in rows]
    assert [r[0] for r in bounded] == [2, 3, 4]


async def test_a_service_store_sets_its_sqlite_page_cache(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from shared.events.database import SERVICE_SQLITE_CACHE_KIB

    for cache in (SERVICE_SQLITE_CACHE_KIB, None):
        store = await EventStore.open(f"sqlite:///{tmp_path / f'{cache}.db'}", sqlite_cache_kib=cache)
        with store.engine.connect() as conn:
            size = (conn.exec_driver_sql("PRAGMA cache_size")).scalar_one()
        assert (size == -SERVICE_SQLITE_CACHE_KIB) == (cache is not None)  # else SQLite's own default
        await store.append("s-1", [target()])  # and it works as a log
        assert await store.head_position() == 1
        await store.close()
    for wrong in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="sqlite_cache_kib"):
            await EventStore.open(f"sqlite:///{tmp_path / 'wrong.db'}", sqlite_cache_kib=wrong)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="sqlite_checkpoint_bytes"):
            await EventStore.open(f"sqlite:///{tmp_path / 'wrong.db'}", sqlite_checkpoint_bytes=wrong)  # type: ignore[arg-type]


async def test_a_service_store_checkpoints_its_wal_past_the_bytes_it_is_given(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from shared.events.database import SERVICE_SQLITE_CHECKPOINT_BYTES, SQLITE_PAGE_BYTES

    for limit, pages in ((SERVICE_SQLITE_CHECKPOINT_BYTES, 2560), (None, 1000), (1, 1)):
        store = await EventStore.open(f"sqlite:///{tmp_path / f'{limit}.db'}", sqlite_checkpoint_bytes=limit)
        with store.engine.connect() as conn:
            assert (conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one() == pages
        await store.close()
    # A small threshold, to see it work: 60 commits of a few pages each leave a WAL of about the
    # threshold plus one commit (the file is reused from its start after each checkpoint).
    path = tmp_path / "small.db"
    store = await EventStore.open(f"sqlite:///{path}", sqlite_checkpoint_bytes=20 * SQLITE_PAGE_BYTES)
    with store.engine.connect() as conn:
        page = (conn.exec_driver_sql("PRAGMA page_size")).scalar_one()
    assert page == SQLITE_PAGE_BYTES  # a new log gets the log's page size
    for n in range(60):
        await store.append_streams([StreamAppend(f"s-{n}-{i}", [target()]) for i in range(20)])
    wal_pages = Path(f"{path}-wal").stat().st_size / (page + 24)  # a WAL frame: a 24-byte header and the page
    assert 20 <= wal_pages < 20 + 15, wal_pages  # without checkpoints: about 500
    assert await store.head_position() == 1200
    await store.close()


async def test_a_log_made_with_another_page_size_keeps_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("PRAGMA page_size=4096")
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE earlier (x INTEGER)")
    old.close()
    store = await EventStore.open(f"sqlite:///{path}", sqlite_checkpoint_bytes=40 * 1024 * 1024)
    await store.append("s-1", [target()])
    with store.engine.connect() as conn:
        assert (conn.exec_driver_sql("PRAGMA page_size")).scalar_one() == 4096
        assert (conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar_one() == 10240  # 40 MiB of its pages
    assert await store.head_position() == 1
    await store.close()
