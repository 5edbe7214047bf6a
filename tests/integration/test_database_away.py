"""The database away for a while (a PostgreSQL restart, a long lock): the relay waits for it
instead of exiting, and the errors a restarting PostgreSQL gives are retried as transient."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from shared.events.consumer import transient
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


class _FakeJetStream:
    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish_async(self, subject: str, body: bytes, headers: dict[str, str]) -> asyncio.Future[Any]:
        self.published.append(headers["Nats-Msg-Id"])
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


async def test_the_relay_waits_for_a_database_that_is_away_instead_of_exiting(tmp_path: Path) -> None:
    store = await EventStore.open(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
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
    js = _FakeJetStream()
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


class _OneHandler:
    consumer = "test-v1"

    def parse(self, message: Any) -> Any:
        from shared.events import registry

        return registry.parse_message(message.body)

    async def handle(self, tx: Any, events: Any) -> None:
        raise OperationalError("INSERT", {}, _PgError("the database system is shutting down", "57P03"))


async def test_a_batch_that_fails_because_the_database_is_away_is_marked_transient_to_be_held(tmp_path: Path) -> None:
    from shared.events.consumer import Incoming, process_batch

    store = await EventStore.open(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    try:
        reg = households(1, seed=3)[0]
        message = Incoming(subject="guanhuai.in.county.HouseholdRegistered", body=reg.model_dump_json().encode(),
                           headers={}, stream="INBOUND", sequence=1, delivered=5)
        result = await process_batch(store, _OneHandler(), [message], max_deliver=5)  # type: ignore[arg-type]
    finally:
        await store.close()
    # Even on what would be its last delivery: held for another try, not dead-lettered.
    assert result.transient and result.failed == [message] and result.dead_lettered == 0
