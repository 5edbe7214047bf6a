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
from shared.events.pull import fast_fetch_supported, fetch_batch, release_queued


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


async def test_messages_of_a_request_that_outlived_its_fetch_are_handed_over_next_time_once(js) -> None:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    waiting = asyncio.create_task(fetch_batch(sub, 10, 5.0))
    await asyncio.sleep(0.2)
    waiting.cancel()  # its request stays on the server for five seconds
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await publish(js, 0, 3)  # delivered to that request, into the queue, with nobody waiting
    await asyncio.sleep(0.3)
    assert sub._sub._pending_queue.qsize() == 3
    msgs = await fetch_batch(sub, 2, 0.5)  # takes two of what came; no new request needed
    msgs += await fetch_batch(sub, 10, 0.5)
    assert [int(m.data) for m in msgs] == [0, 1, 2]
    assert sub._sub._pending_size == 0
    # Every message taken is counted done (Subscription.drain waits for that); what is not is still
    # queued: the statuses with which the server ends the two requests, when they come.
    queue = sub._sub._pending_queue
    assert queue._unfinished_tasks == queue.qsize()


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


async def test_heartbeats_and_stale_no_messages_end_nothing_and_a_conflict_waits_out_its_time(js) -> None:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    beats = [asyncio.create_task(arrives(sub, status(sub, code, text), after)) for code, text, after in
             [("100", "Idle Heartbeat", 0.05), ("404", "No Messages", 0.1)]]
    later = asyncio.create_task(fetch_batch(sub, 5, 3.0))
    await asyncio.sleep(0.3)
    await publish(js, 0, 1)  # after the heartbeat and the 404: the fetch was still waiting
    assert [int(m.data) for m in await later] == [0]
    await asyncio.gather(*beats)

    # A conflict with nothing fetched: no error, and no new request at once either (FastStream's
    # loop would send the next one straight away): the fetch waits out its time.
    refused = asyncio.create_task(arrives(sub, status(sub, "409", "Exceeded MaxWaiting"), 0.05))
    started = time.monotonic()
    with pytest.raises(nats.errors.TimeoutError):
        await fetch_batch(sub, 5, 1.0)
    await refused
    assert time.monotonic() - started >= 0.9

    await publish(js, 1, 1)
    late = asyncio.create_task(arrives(sub, status(sub, "409", "Exceeded MaxWaiting"), 0.3))
    started = time.monotonic()
    assert [int(m.data) for m in await fetch_batch(sub, 5, 5.0)] == [1]  # ended by the 409, not the timeout
    await late
    assert time.monotonic() - started < 4.0


async def test_a_client_closing_wakes_a_waiting_fetch(js) -> None:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    waiting = asyncio.create_task(fetch_batch(sub, 5, None))  # no timeout at all
    await asyncio.sleep(0.2)
    started = time.monotonic()
    await js._nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 3.0
    with pytest.raises(nats.errors.ConnectionClosedError):
        await fetch_batch(sub, 5, 1.0)


async def test_without_a_timeout_it_waits_until_messages_come(js) -> None:  # type: ignore[no-untyped-def]
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    later = asyncio.create_task(fetch_batch(sub, 2, None))
    await asyncio.sleep(0.5)
    assert not later.done()
    await publish(js, 0, 2)
    assert [int(m.data) for m in await asyncio.wait_for(later, 5)] == [0, 1]


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
    # Time left too short to ask the server for anything (its expires would be 0, "never"):
    # a timeout at once, and no request left waiting on the server.
    started = time.monotonic()
    with pytest.raises(nats.errors.TimeoutError):
        await fetch_batch(sub, 5, 0.00005)
    assert time.monotonic() - started < 0.5
    assert (await js.consumer_info("P", "c")).num_waiting == 0


async def test_the_services_fetch_takes_batches_this_way_and_single_messages_as_nats_py_does(js, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    fix_nats_fetch()
    calls: list[tuple[int, bool]] = []

    async def counting(psub: Any, batch: int, timeout: float | None, heartbeat: float | None = None,
                       prefetch: bool = False) -> list[Any]:
        calls.append((batch, prefetch))
        return await fetch_batch(psub, batch, timeout, heartbeat, prefetch=prefetch)

    monkeypatch.setattr("shared.events.broker.fetch_batch", counting)
    await publish(js, 0, 4)
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    assert isinstance(sub, JetStreamContext.PullSubscription)
    one = await sub.fetch(1, timeout=1.0)
    rest = await sub.fetch(10, timeout=0.5)
    assert [int(m.data) for m in one + rest] == [0, 1, 2, 3]
    assert calls == [(10, True)]  # the services ask for the next batch ahead
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(10, timeout=0.2)


async def test_delivery_of_reads_what_nats_py_metadata_reads(js) -> None:  # type: ignore[no-untyped-def]
    from nats.errors import NotJSMessageError

    from shared.events.pull import delivery_of

    await publish(js, 0, 5)
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    first = await fetch_batch(sub, 5, 2.0)
    await first[2].nak()  # comes back as its second delivery
    again = await fetch_batch(sub, 1, 2.0)
    for msg in [*first, *again]:
        assert len(msg.reply.split(".")) == 9  # the form delivery_of reads itself
        expected = (msg.metadata.stream, msg.metadata.sequence.stream, msg.metadata.num_delivered)
        assert delivery_of(Msg(msg._client, subject=msg.subject, reply=msg.reply, data=msg.data)) == expected
    assert [delivery_of(m) for m in first] == [("P", n, 1) for n in range(1, 6)]
    assert delivery_of(again[0]) == ("P", 3, 2)
    # The form with a domain and an account hash is left to nats-py, which reads it too.
    with_domain = Msg(first[0]._client, subject="p.m", reply="$JS.ACK.hub.ACCHASH.P.c.4.17.9.1700000000000000000.3.xyz")
    assert delivery_of(with_domain) == ("P", 17, 4)
    for reply in ("", "_INBOX.abc", "$JS.ACK.P.c.1.2"):
        with pytest.raises(NotJSMessageError):
            delivery_of(Msg(first[0]._client, subject="p.m", reply=reply))


async def test_a_request_takes_no_more_bytes_than_it_asks_for_and_the_rest_comes_next(js) -> None:  # type: ignore[no-untyped-def]
    body = b"x" * 300_000
    for n in range(6):
        await js.publish("p.m", body + str(n).encode())
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    first = await fetch_batch(sub, 10, 2.0, max_bytes=1_000_000)
    assert 1 <= len(first) <= 3  # about 1 MB of 300 kB messages, not all six
    got = list(first)
    while len(got) < 6:
        got += await fetch_batch(sub, 10, 2.0, max_bytes=1_000_000)
    assert [m.data[-1:] for m in got] == [str(n).encode() for n in range(6)]
    assert all(m.metadata.num_delivered == 1 for m in got)


async def test_a_full_batch_asks_for_the_next_ahead_and_every_message_is_handed_over_once(js) -> None:  # type: ignore[no-untyped-def]
    await publish(js, 0, 1100)
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    queue = sub._sub._pending_queue
    first = await fetch_batch(sub, 500, 2.0, prefetch=True)
    assert len(first) == 500
    for _ in range(100):  # the next batch comes while this one is handled
        if queue.qsize() >= 500:
            break
        await asyncio.sleep(0.02)
    assert 500 <= queue.qsize() <= 501  # (and the server's "batch completed" status)
    started = time.monotonic()
    second = await fetch_batch(sub, 500, 1.0, prefetch=True)  # asks ahead too, for a second
    assert time.monotonic() - started < 0.5  # taken from the queue, not waited for
    third = await fetch_batch(sub, 500, 0.3, prefetch=True)  # only 100 left: not full, nothing asked ahead
    assert [int(m.data) for m in first + second + third] == list(range(1100))
    for m in first + second + third:
        await m.ack()
    await asyncio.sleep(1.2)  # every request's expiry has passed
    assert queue.empty() or all(m.headers and m.headers.get("Status") for m in queue._queue)
    assert (await js.consumer_info("P", "c")).num_waiting == 0  # no request left waiting
    with pytest.raises(nats.errors.TimeoutError):
        await fetch_batch(sub, 500, 0.2, prefetch=True)


async def test_what_was_fetched_ahead_and_not_handled_is_naked_back_for_delivery_at_once(js) -> None:  # type: ignore[no-untyped-def]
    await publish(js, 0, 40)
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    first = await fetch_batch(sub, 20, 2.0, prefetch=True)
    for m in first:
        await m.ack()
    for _ in range(100):
        if sub._sub._pending_queue.qsize() >= 20:
            break
        await asyncio.sleep(0.02)
    assert await release_queued(sub) == 20  # the service stops with the next batch fetched ahead
    assert sub._sub._pending_queue.empty() and sub._sub._pending_size == 0
    started = time.monotonic()
    again = await fetch_batch(sub, 20, 2.0)
    assert time.monotonic() - started < 5  # not after the consumer's ack_wait of 30 s
    assert [int(m.data) for m in again] == list(range(20, 40))
    assert all(m.metadata.num_delivered == 2 for m in again)


async def test_a_request_ahead_that_cannot_be_sent_leaves_the_batch_in_hand(js, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    await publish(js, 0, 30)
    sub = await js.pull_subscribe("p.>", durable="c", stream="P")
    nc, original = sub._nc, sub._nc.publish
    requests: list[bytes] = []

    async def refusing(subject: str, payload: bytes = b"", reply: str = "", headers: Any = None) -> None:
        if subject == sub._nms:
            requests.append(payload)
            if len(requests) == 2:  # the one asked ahead: the connection is going away
                raise nats.errors.OutboundBufferLimitError
        await original(subject, payload, reply=reply, headers=headers)

    monkeypatch.setattr(nc, "publish", refusing)
    first = await fetch_batch(sub, 10, 2.0, prefetch=True)
    assert [int(m.data) for m in first] == list(range(10)) and len(requests) == 2
    second = await fetch_batch(sub, 10, 2.0, prefetch=True)  # asks for itself, as without prefetch
    assert [int(m.data) for m in second] == list(range(10, 20))
