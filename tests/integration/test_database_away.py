"""The database away for a while (a PostgreSQL restart, a long lock): the relay waits for it
instead of exiting, and the errors a restarting PostgreSQL gives are retried as transient."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from shared.events.consumer import DeciderHandler, transient
from shared.events.inbox import metadata as inbox_tables
from shared.events.relay import Relay
from shared.events.store import EventStore
from tests.support.programme import households


class _PgError(Exception):
    def __init__(self, message: str, sqlstate: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def test_a_postgresql_server_shutting_down_or_starting_up_is_a_transient_fault() -> None:
    for sqlstate in ("57P01", "57P02", "57P03", "08006", "40001"):
        assert transient(DBAPIError("SELECT 1", {}, _PgError("the database system is shutting down", sqlstate)))
    assert transient(DBAPIError("SELECT 1", {}, ConnectionResetError("reset by peer")))


def test_a_bad_statement_is_not_a_transient_fault() -> None:
    assert not transient(ProgrammingError("SELECT nope", {}, _PgError("column nope does not exist", "42703")))
    assert not transient(DBAPIError("INSERT", {}, _PgError("duplicate key value", "23505")))


class _FakeNats:
    """Just enough of a nats-py client for the relay: JetStream acknowledges every publish."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.answer: Any = None
        self.open = asyncio.Event()  # a test may close it to hold publishing up
        self.open.set()

    def new_inbox(self) -> str:
        return "_INBOX.fake"

    async def subscribe(self, subject: str, cb: Any) -> object:
        self.answer = cb
        return object()

    async def publish(self, subject: str, body: bytes, reply: str, headers: dict[str, str]) -> None:
        await self.open.wait()
        self.published.append(headers["Nats-Msg-Id"])
        await self.answer(SimpleNamespace(subject=reply, data=b'{"stream":"EVENTS","seq":1}', headers=None))


async def test_the_relay_waits_for_a_database_that_is_away_instead_of_exiting(tmp_path: Path) -> None:
    store = await EventStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    regs = households(3, seed=7)
    for reg in regs:
        await store.append(f"household-{reg.payload.household_id}", [reg])
    real_read_rows = store.read_rows
    failures = {"left": 3}

    def flaky_read_rows(*args: Any, **kwargs: Any) -> Any:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError("SELECT", {}, _PgError("the database system is shutting down", "57P03"))
        return real_read_rows(*args, **kwargs)

    store.read_rows = flaky_read_rows  # type: ignore[method-assign]
    js = _FakeNats()
    relay = Relay(store, js, idle_s=0.01)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        for _ in range(500):  # bounded: 3 failures back off 0.1 + 0.2 + 0.4 s
            if len(js.published) == 3 or running.done():
                break
            await asyncio.sleep(0.02)
        assert not running.done(), running.exception() if running.done() else None
        assert failures["left"] == 0
        assert js.published == [str(r.event_id) for r in regs]
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
        await store.close()


async def test_the_relay_publishes_on_while_another_writer_holds_the_lock_it_needs_for_its_checkpoint(
        tmp_path: Path) -> None:
    """A service deciding a large batch holds the log's write lock: the relay's checkpoint waits
    for it in the background, and publishing goes on meanwhile."""
    db = tmp_path / "log.db"
    store = await EventStore.open(f"sqlite:///{db}")
    regs = households(4, seed=11)
    for reg in regs[:2]:
        await store.append(f"household-{reg.payload.household_id}", [reg])
    nats_client = _FakeNats()
    relay = Relay(store, nats_client, idle_s=0.01, checkpoint_every_s=0.0, batch_size=1)
    stop = asyncio.Event()
    running = asyncio.create_task(relay.run(stop))
    try:
        for _ in range(250):
            if len(nats_client.published) == 2 and relay.saved_position == 2:
                break
            await asyncio.sleep(0.02)
        assert relay.saved_position == 2
        # The relay stays at 2 (its publish is held up) until the other writer has the lock: the
        # lock is taken in a thread, so that this loop, which the relay shares, never waits on it.
        nats_client.open.clear()
        for reg in regs[2:]:
            await store.append(f"household-{reg.payload.household_id}", [reg])
        holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")  # readers go on (WAL); no other writer gets in
        nats_client.open.set()
        try:
            for _ in range(250):
                if len(nats_client.published) == 4:
                    break
                await asyncio.sleep(0.02)
            assert nats_client.published == [str(r.event_id) for r in regs]
            assert relay.saved_position == 2  # its checkpoint is still waiting for the lock
            assert not running.done()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
    finally:
        stop.set()
        await asyncio.wait_for(running, 30)
    assert relay.saved_position == 4
    from shared.events.relay import load_checkpoint

    assert await load_checkpoint(store, "relay") == 4
    await store.close()


class _OneHandler(DeciderHandler):
    consumer = "test-v1"

    def parse(self, message: Any) -> Any:
        from shared.events import registry

        return registry.parse_message(message.body)

    def prepare(self, conn: Any, events: Any) -> Any:
        raise OperationalError("INSERT", {}, _PgError("the database system is shutting down", "57P03"))


async def test_a_batch_that_fails_because_the_database_is_away_is_marked_transient_to_be_held(tmp_path: Path) -> None:
    from shared.events.consumer import Incoming, process_batch

    store = await EventStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    await store.create_schema(inbox_tables)
    try:
        reg = households(1, seed=3)[0]
        message = Incoming(subject="guanhuai.in.county.HouseholdRegistered", body=reg.model_dump_json().encode(),
                           headers={}, stream="INBOUND", sequence=1, delivered=5)
        result = await process_batch(store, _OneHandler(), [message], max_deliver=5)  # type: ignore[arg-type]
    finally:
        await store.close()
    # Even on what would be its last delivery: held for another try, not dead-lettered.
    assert result.transient and result.failed == [message] and result.dead_lettered == 0


def _real_sqlite_error(tmp_path: Path, sql: str, *, locked: bool = False) -> sqlite3.Error:
    """An error as the sqlite3 driver really raises it (with its result code)."""
    db = tmp_path / "raw.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    if locked:
        holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(db, timeout=0)
    try:
        other.execute(sql)
    except sqlite3.Error as exc:
        return exc
    finally:
        other.close()
        holder.close()
    raise AssertionError(f"{sql!r} did not fail")


def test_a_locked_sqlite_database_is_transient_but_a_missing_table_is_not(tmp_path: Path) -> None:
    locked = _real_sqlite_error(tmp_path, "SELECT * FROM t", locked=True)
    missing = _real_sqlite_error(tmp_path, "SELECT * FROM nowhere")
    assert transient(DBAPIError.instance("SELECT", (), locked, sqlite3.Error))
    assert not transient(DBAPIError.instance("SELECT", (), missing, sqlite3.Error))


async def test_reading_a_sqlite_log_raises_sqlalchemy_errors_that_say_whether_to_retry(tmp_path: Path) -> None:
    store = await EventStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        with store.engine.begin() as conn:  # a log that lost its table: no retry mends that
            conn.exec_driver_sql("DROP TRIGGER events_no_delete")
            conn.exec_driver_sql("DROP TABLE events")
        try:
            [rows async for rows in store.read_rows()]
        except DBAPIError as exc:
            assert isinstance(exc.orig, sqlite3.Error) and not transient(exc)
        else:
            raise AssertionError("reading a log without its table succeeded")
    finally:
        await store.close()


class _FailsInBatchThenDatabaseGoes(DeciderHandler):
    """A batch that fails for one input's sake; while it is split up, the database goes away."""

    consumer = "test-v1"

    def __init__(self) -> None:
        self.calls = 0

    def parse(self, message: Any) -> Any:
        from shared.events import registry

        return registry.parse_message(message.body)

    def prepare(self, conn: Any, events: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            raise ValueError("one input of this batch is poison")
        raise OperationalError("INSERT", {}, _PgError("the database system is shutting down", "57P03"))


async def test_the_database_going_away_while_a_batch_is_split_up_holds_the_batch_instead_of_dead_lettering(
        tmp_path: Path) -> None:
    from shared.events.consumer import Incoming, process_batch

    store = await EventStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    await store.create_schema(inbox_tables)
    try:
        messages = [
            Incoming(subject="guanhuai.in.county.HouseholdRegistered", body=reg.model_dump_json().encode(), headers={},
                     stream="INBOUND", sequence=n, delivered=5)
            for n, reg in enumerate(households(2, seed=4), start=1)
        ]
        result = await process_batch(store, _FailsInBatchThenDatabaseGoes(), messages, max_deliver=5)  # type: ignore[arg-type]
    finally:
        await store.close()
    # On their last delivery, yet neither dead-lettered nor nak'ed one by one: the batch is held.
    assert result.transient and result.failed == messages and result.dead_lettered == 0
