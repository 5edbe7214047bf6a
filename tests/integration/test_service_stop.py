"""A service stopped while the next batch has been fetched ahead (``PullLoop`` in
shared/events/broker.py) finishes the batch in hand and hands those messages back to JetStream
(nak) before it disconnects: they are delivered again at once, not after ``ack_wait``, and none
of them counts as handled."""

from __future__ import annotations

import asyncio
import threading
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
from shared.events.broker import ConsumerSpec, build_app, ensure_streams
from shared.events.inbox import metadata as inbox_tables
from shared.events.inbox import processed_messages
from shared.events.store import EventStore
from shared.events.subjects import inbound_stream, inbound_subject, inbound_subjects
from tests.support.programme import households


class HeldEnrollment(EnrollmentHandler):
    """Enrollment whose first batch waits until it is let go (in the worker thread that decides it)."""

    def __init__(self) -> None:
        self.first_batch = threading.Event()
        self.let_go = threading.Event()

    def prepare(self, conn: Any, events: Sequence[Any]) -> Any:
        if not self.first_batch.is_set():
            self.first_batch.set()
            self.let_go.wait(60)
        return super().prepare(conn, events)


async def test_a_stopping_service_naks_what_it_fetched_ahead(tmp_path: Path) -> None:
    store = await EventStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    await store.create_schema(inbox_tables, enrollment_tables)
    handler = HeldEnrollment()
    spec = ConsumerSpec(handler, inbound_stream("county"), (inbound_subjects("county"),), batch_size=10, ack_wait_s=60)
    with NatsServer(tmp_path / "nats") as server:
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            await ensure_streams(js)  # the households wait in the stream before the service starts: full batches
            for event in households(25, seed=5):
                await js.publish(inbound_subject("county", event.event_type), event.model_dump_json().encode(),
                                 headers={"Nats-Msg-Id": str(event.event_id)})
            app, broker = build_app(server.url, store, [spec], name="stop-test")
            await app.start()
            assert await asyncio.to_thread(handler.first_batch.wait, 20)
            for _ in range(200):  # the next ten are fetched ahead while the first batch is in hand
                if (await js.consumer_info(inbound_stream("county"), spec.durable)).num_ack_pending == 20:
                    break
                await asyncio.sleep(0.05)
            assert (await js.consumer_info(inbound_stream("county"), spec.durable)).num_ack_pending == 20
            stopping = asyncio.create_task(app.stop())
            await asyncio.sleep(0.2)
            handler.let_go.set()  # the batch in hand is finished, then the service disconnects
            await asyncio.wait_for(stopping, 30)
            # Another instance takes over at once: the ten come back now, not after ack_wait (60 s).
            other = await js.pull_subscribe_bind(spec.durable, inbound_stream("county"))
            started = time.monotonic()
            taken: list[Any] = []
            while len(taken) < 15 and time.monotonic() - started < 10:
                try:
                    taken += await other.fetch(15 - len(taken), timeout=1)
                except nats.errors.TimeoutError:
                    pass
            assert time.monotonic() - started < 10
            assert sorted(m.metadata.num_delivered for m in taken) == [1] * 5 + [2] * 10
            assert sorted(m.metadata.sequence.stream for m in taken) == list(range(11, 26))
            with store.engine.connect() as conn:
                assert conn.execute(select(func.count()).select_from(processed_messages)).scalar_one() == 10
        finally:
            await nc.close()
            await store.close()
