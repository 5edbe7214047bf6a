"""A service stopped while it handles a batch finishes that batch and holds nothing else: what it
has not taken is delivered at once to the next instance, not after ``ack_wait``, and only the
batch in hand counts as handled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nats
import nats.errors
from sqlalchemy import func, select

from guanhuai.embedded import NatsServer
from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata as enrollment_tables
from shared.events.broker import ConsumerSpec, build_app
from shared.events.inbox import metadata as inbox_tables
from shared.events.inbox import processed_messages
from shared.events.store import EventStore
from shared.events.subjects import inbound_stream, inbound_subject, inbound_subjects
from tests.support.programme import households


class HeldEnrollment(EnrollmentHandler):
    """Enrollment whose first batch waits until it is let go."""

    def __init__(self) -> None:
        self.first_batch = asyncio.Event()
        self.let_go = asyncio.Event()

    async def prepare(self, conn: Any, events: Sequence[Any]) -> Any:
        if not self.first_batch.is_set():
            self.first_size = len(events)
            self.first_batch.set()
            await self.let_go.wait()
        return await super().prepare(conn, events)


async def test_a_stopping_service_finishes_its_batch_and_holds_nothing_else(tmp_path: Path) -> None:
    store = await EventStore.open(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    await store.create_schema(inbox_tables, enrollment_tables)
    handler = HeldEnrollment()
    spec = ConsumerSpec(handler, inbound_stream("county"), (inbound_subjects("county"),), batch_size=10, ack_wait_s=60)
    with NatsServer(tmp_path / "nats") as server:
        app, broker = build_app(server.url, store, [spec], name="stop-test")
        await app.start()
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            for event in households(25, seed=5):
                await js.publish(inbound_subject("county", event.event_type), event.model_dump_json().encode(),
                                 headers={"Nats-Msg-Id": str(event.event_id)})
            await asyncio.wait_for(handler.first_batch.wait(), 20)
            await asyncio.sleep(0.5)  # nothing more is taken while the first batch is in hand
            first = handler.first_size  # 10, unless the households came slower than a batch's time
            assert (await js.consumer_info(inbound_stream("county"), spec.durable)).num_ack_pending == first
            stopping = asyncio.create_task(app.stop())
            await asyncio.sleep(0.2)
            handler.let_go.set()  # the batch in hand is finished, then the service disconnects
            await asyncio.wait_for(stopping, 30)
            # Another instance takes over at once: what was not handled, none waiting for ack_wait (60 s).
            other = await js.pull_subscribe_bind(spec.durable, inbound_stream("county"))
            started = time.monotonic()
            taken: list[Any] = []
            while len(taken) < 25 - first and time.monotonic() - started < 10:
                try:
                    taken += await other.fetch(25 - first - len(taken), timeout=1)
                except nats.errors.TimeoutError:
                    pass
            assert time.monotonic() - started < 10
            assert sorted(m.metadata.num_delivered for m in taken) == [1] * (25 - first)  # none was fetched and handed back
            assert sorted(m.metadata.sequence.stream for m in taken) == list(range(first + 1, 26))
            async with store.engine.connect() as conn:
                assert (await conn.execute(select(func.count()).select_from(processed_messages))).scalar_one() == first
        finally:
            await nc.close()
            await store.close()
