"""``fetch_batch`` (shared/events/pull.py) against a real nats-server: it hands over every message
once, in order, within its timeout, as nats-py's own fetch does, and the services' fetch uses it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from guanhuai.embedded import NatsServer
from shared.events.broker import fix_nats_fetch
from shared.events.pull import fast_fetch_supported, fetch_batch


@pytest.fixture
async def js(tmp_path: Path) -> AsyncIterator[Any]:
    with NatsServer(tmp_path / "nats") as server:
        client = await nats.connect(server.url)
        context = client.jetstream()
        await context.add_stream(StreamConfig(name="P", subjects=["p.>"], storage=StorageType.FILE))
        await context.add_consumer("P", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=30,
                                                       max_ack_pending=10_000))
        try:
            yield context
        finally:
            await client.close()


async def publish(js: Any, first: int, count: int) -> None:
    for n in range(first, first + count):
        await js.publish("p.m", str(n).encode())


async def test_a_batch_is_handed_over_in_order_and_every_message_once(js) -> None:  # type: ignore[no-untyped-def]
    await publish(js, 0, 1200)
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    assert fast_fetch_supported(sub)
    seen: list[int] = []
    while len(seen) < 1200:
        msgs = await fetch_batch(sub, 500, 2.0)
        assert len(msgs) <= 500
        for m in msgs:
            await m.ack()
        seen += [int(m.data) for m in msgs]
    assert seen == list(range(1200))
    with pytest.raises(nats.errors.TimeoutError):  # nothing more: a timeout, as nats-py says it
        await fetch_batch(sub, 500, 0.2)
    assert sub._sub._pending_size == 0  # the subscription's byte count stays true (slow-consumer limits)


async def test_it_returns_what_came_when_its_time_is_up_and_waits_for_what_comes_meanwhile(js) -> None:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    await publish(js, 0, 3)
    started = time.monotonic()
    msgs = await fetch_batch(sub, 500, 0.3)
    assert [int(m.data) for m in msgs] == [0, 1, 2]
    assert 0.25 <= time.monotonic() - started < 2.0  # it waited for the batch to fill, up to its timeout
    for m in msgs:
        await m.ack()

    later = asyncio.create_task(fetch_batch(sub, 500, 2.0))
    await asyncio.sleep(0.2)
    await publish(js, 3, 2)  # published while the request waits on the server
    assert [int(m.data) for m in await later] == [3, 4]


async def test_messages_of_a_request_that_outlived_its_fetch_are_handed_over_next_time(js) -> None:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    with pytest.raises(nats.errors.TimeoutError):
        await fetch_batch(sub, 10, 0.1)
    # A message in the queue from an earlier request, and that request's stale status after it.
    await publish(js, 0, 1)
    first = await fetch_batch(sub, 1, 1.0)
    queue = sub._sub._pending_queue
    stale = status(sub, "408", "Request Timeout")
    queue.put_nowait(first[0])
    queue.put_nowait(stale)
    await publish(js, 1, 1)
    msgs = await fetch_batch(sub, 5, 0.5)
    assert [int(m.data) for m in msgs] == [0, 1]


def status(sub: Any, code: str, description: str) -> Msg:
    return Msg(sub._nc, subject=sub._deliver, data=b"", headers={"Status": code, "Description": description})


async def arrives(sub: Any, msg: Any, after_s: float = 0.1) -> None:
    await asyncio.sleep(after_s)
    sub._sub._pending_queue.put_nowait(msg)


async def test_an_error_status_is_raised_when_nothing_came_and_ends_the_batch_when_some_did(js) -> None:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    answer = asyncio.create_task(arrives(sub, status(sub, "400", "Bad Request")))
    with pytest.raises(nats.js.errors.APIError, match="Bad Request"):
        await fetch_batch(sub, 5, 2.0)
    await answer

    await publish(js, 0, 2)
    answer = asyncio.create_task(arrives(sub, status(sub, "400", "Bad Request"), after_s=0.3))
    started = time.monotonic()
    msgs = await fetch_batch(sub, 5, 5.0)
    await answer
    assert [int(m.data) for m in msgs] == [0, 1] and time.monotonic() - started < 4.0

    # Heartbeats and "no messages" (which only requests that do not wait are sent) end nothing; a
    # "conflict" ends the request without an error.
    for item in (status(sub, "100", "Idle Heartbeat"), status(sub, "404", "No Messages")):
        sub._sub._pending_queue.put_nowait(item)
    answer = asyncio.create_task(arrives(sub, status(sub, "100", "Idle Heartbeat"), 0.05))
    late = asyncio.create_task(arrives(sub, status(sub, "409", "Exceeded MaxWaiting"), 0.15))
    started = time.monotonic()
    with pytest.raises(nats.errors.TimeoutError):
        await fetch_batch(sub, 5, 3.0)
    await answer, await late
    assert time.monotonic() - started < 2.0  # the 409 ended it, not the timeout


async def test_a_request_timeout_left_by_an_earlier_request_does_not_end_this_one(js) -> None:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    stale = asyncio.create_task(arrives(sub, status(sub, "408", "Request Timeout"), 0.05))
    later = asyncio.create_task(fetch_batch(sub, 500, 2.0))
    await asyncio.sleep(0.3)
    await publish(js, 0, 2)
    await stale
    assert [int(m.data) for m in await later] == [0, 1]


async def test_bad_arguments_are_refused_as_nats_py_refuses_them(js) -> None:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    with pytest.raises(ValueError, match="batch"):
        await fetch_batch(sub, 0, 1.0)
    with pytest.raises(ValueError, match="timeout"):
        await fetch_batch(sub, 5, 0)


async def test_the_services_fetch_takes_batches_this_way_and_single_messages_as_nats_py_does(js, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fix_nats_fetch()
    calls: list[int] = []

    async def counting(psub: Any, batch: int, timeout: float | None, heartbeat: float | None = None) -> list[Any]:
        calls.append(batch)
        return await fetch_batch(psub, batch, timeout, heartbeat)

    monkeypatch.setattr("shared.events.broker.fetch_batch", counting)
    await publish(js, 0, 4)
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    assert isinstance(sub, JetStreamContext.PullSubscription)
    one = await sub.fetch(1, timeout=1.0)
    rest = await sub.fetch(10, timeout=0.5)
    assert [int(m.data) for m in one + rest] == [0, 1, 2, 3]
    assert calls == [10]
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(10, timeout=0.2)
