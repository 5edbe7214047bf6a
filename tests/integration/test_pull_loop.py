"""The services pull with nats-py's public ``fetch`` (shared/events/broker.py): a batch is collected
across the partial answers ``fetch`` gives, its time-outs (the bare ``asyncio.TimeoutError`` of
nats-py 2.16 too) end a batch without losing what came, and nothing of nats-py is replaced."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from guanhuai.embedded import NatsServer
from shared.events.broker import build_app, delivery_of, fetch_up_to
from shared.events.store import EventStore


@pytest.fixture
async def js(tmp_path: Path) -> AsyncIterator[Any]:
    with NatsServer(tmp_path / "nats") as server:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name="P", subjects=["p.>"], storage=StorageType.FILE))
        await js.add_consumer("P", ConsumerConfig(durable_name="c", ack_wait=30))
        try:
            yield js
        finally:
            await nc.close()


async def publish(js: Any, first: int, count: int) -> None:
    for n in range(first, first + count):
        await js.publish(f"p.{n}", str(n).encode())


async def test_a_batch_is_collected_until_full_or_its_time_is_up(js) -> None:  # type: ignore[no-untyped-def]
    await publish(js, 0, 1200)
    sub = await js.pull_subscribe_bind("c", "P")
    first = await fetch_up_to(sub, 1000, 2.0)
    assert [int(m.data) for m in first] == list(range(1000))
    for msg in first:
        await msg.ack()  # (at most 1,000 unacked: the consumer's max_ack_pending)
    later = asyncio.create_task(fetch_up_to(sub, 1000, 1.0))
    await asyncio.sleep(0.2)
    await publish(js, 1200, 5)  # while the fetch waits: taken into the same batch
    rest = await later
    assert [int(m.data) for m in rest] == list(range(1000, 1205))
    assert await fetch_up_to(sub, 10, 0.2) == []  # nothing came: no error, an empty batch


async def test_a_bare_timeout_from_nats_py_ends_the_batch_with_what_came() -> None:
    class Fetching:
        """nats-py 2.16's fetch: part of a batch, then a bare asyncio.TimeoutError (nats.py #1008)."""

        def __init__(self) -> None:
            self.calls = 0

        async def fetch(self, batch: int, timeout: float) -> list[str]:
            self.calls += 1
            if self.calls == 1:
                return ["a", "b"]
            raise asyncio.TimeoutError

    psub = Fetching()
    assert await fetch_up_to(psub, 10, 1.0) == ["a", "b"]
    assert psub.calls == 2


async def test_delivery_of_reads_what_nats_py_metadata_reads(js) -> None:  # type: ignore[no-untyped-def]
    from nats.errors import NotJSMessageError

    await publish(js, 0, 5)
    sub = await js.pull_subscribe_bind("c", "P")
    first = await fetch_up_to(sub, 5, 2.0)
    await first[2].nak()  # comes back as its second delivery
    again = await fetch_up_to(sub, 1, 2.0)
    for msg in [*first, *again]:
        assert len(msg.reply.split(".")) == 9  # the form delivery_of reads itself
        expected = (msg.metadata.stream, msg.metadata.sequence.stream, msg.metadata.num_delivered)
        assert delivery_of(Msg(None, subject=msg.subject, reply=msg.reply, data=msg.data)) == expected  # type: ignore[arg-type]
    assert [delivery_of(m) for m in first] == [("P", n, 1) for n in range(1, 6)]
    assert delivery_of(again[0]) == ("P", 3, 2)
    # The form with a domain and an account hash is left to nats-py, which reads it too.
    with_domain = Msg(None, subject="p.m", reply="$JS.ACK.hub.ACCHASH.P.c.4.17.9.1700000000000000000.3.xyz")  # type: ignore[arg-type]
    assert delivery_of(with_domain) == ("P", 17, 4)
    for reply in ("", "_INBOX.abc", "$JS.ACK.P.c.1.2"):
        with pytest.raises(NotJSMessageError):
            delivery_of(Msg(None, subject="p.m", reply=reply))  # type: ignore[arg-type]


async def test_a_service_replaces_nothing_of_nats_py(tmp_path: Path) -> None:
    fetch = JetStreamContext.PullSubscription.fetch
    store = await EventStore.open(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    with NatsServer(tmp_path / "nats") as server:
        app, broker = build_app(server.url, store, [], name="patch-test")
        await app.start()
        try:
            assert JetStreamContext.PullSubscription.fetch is fetch
        finally:
            await app.stop()
            await store.close()
