"""``shared/events/wire.py`` against a real nats-server: a batch written as one command stores
and acks exactly what nats-py's own ``publish`` and ``Msg.ack`` would, and refuses what they refuse."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from guanhuai.embedded import NatsServer
from shared.events.pull import fetch_batch
from shared.events.wire import ack_all, answer_inline, fast_wire_supported, publish_all


@pytest.fixture
async def nc(tmp_path: Path) -> AsyncIterator[Any]:
    with NatsServer(tmp_path / "nats") as server:
        client = await nats.connect(server.url)
        js = client.jetstream()
        for name in ("OURS", "THEIRS"):
            await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"], storage=StorageType.FILE,
                                             duplicate_window=60))
        try:
            yield client
        finally:
            await client.close()


BODIES = [b'{"n": 1}', "含中文的 JSON\r\nHPUB x y 1 2\r\n".encode(), b"", bytes(range(256))]


async def test_published_messages_are_stored_as_nats_pys_publish_stores_them(nc) -> None:  # type: ignore[no-untyped-def]
    assert fast_wire_supported(nc)
    js = nc.jetstream()
    sent_before = nc.stats["out_msgs"]
    await publish_all(nc, [(f"ours.{i}", body, f"id-{i}") for i, body in enumerate(BODIES)], "")
    for i, body in enumerate(BODIES):
        await js.publish(f"theirs.{i}", body, headers={"Nats-Msg-Id": f"id-{i}"})
    assert nc.stats["out_msgs"] >= sent_before + 2 * len(BODIES)
    for i, body in enumerate(BODIES):
        ours, theirs = await js.get_last_msg("OURS", f"ours.{i}"), await js.get_last_msg("THEIRS", f"theirs.{i}")
        assert (ours.data or b"") == (theirs.data or b"") == body  # (an empty body is read back as None)
        assert ours.headers == theirs.headers == {"Nats-Msg-Id": f"id-{i}"}
    assert (await js.stream_info("OURS")).state.messages == len(BODIES)


async def test_every_message_gets_the_reply_subject_and_jetstream_answers_each(nc) -> None:  # type: ignore[no-untyped-def]
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await publish_all(nc, [(f"ours.{i % 2}", b"{}", f"r-{i}") for i in range(300)], inbox)
    answers = [await sub.next_msg(timeout=5) for _ in range(300)]
    assert sorted(json.loads(a.data)["seq"] for a in answers) == list(range(1, 301))
    # The same ids again: JetStream drops them as duplicates (the relay's retry), and still answers.
    await publish_all(nc, [(f"ours.{i % 2}", b"{}", f"r-{i}") for i in range(300)], inbox)
    again = [await sub.next_msg(timeout=5) for _ in range(300)]
    assert all(json.loads(a.data).get("duplicate") is True for a in again)
    assert (await nc.jetstream().stream_info("OURS")).state.messages == 300


@pytest.mark.parametrize("subject, msg_id, reply", [
    ("ours.a b", "id", ""), ("ours.a\r\nPUB evil 0", "id", ""), ("", "id", ""),
    ("ours.a", "id with space", ""), ("ours.a", "id\r\nX: y", ""), ("ours.a", "", ""), ("ours.a", "id", "in box"),
])
async def test_a_token_that_would_break_the_protocol_line_sends_nothing(nc, subject, msg_id, reply) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(nats.errors.BadSubjectError):
        await publish_all(nc, [("ours.ok", b"{}", "fine"), (subject, b"{}", msg_id)], reply)
    js = nc.jetstream()
    await js.publish("ours.sentinel", b"{}")  # stored (and acknowledged) after anything sent before it
    assert (await js.stream_info("OURS")).state.messages == 1  # not even the good one before the bad one


async def test_the_payload_limit_and_a_closed_connection_are_refused_as_publish_refuses_them(nc) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(nats.errors.MaxPayloadError):
        await publish_all(nc, [("ours.big", b"x" * (nc.max_payload + 1), "big")], "")
    await nc.close()
    with pytest.raises(nats.errors.ConnectionClosedError):
        await publish_all(nc, [("ours.a", b"{}", "a")], "")


async def _acks_settle(js: Any, pending: int, floor: int) -> Any:
    """The consumer's state once the server has worked through the acks it was sent (JetStream
    handles acks after it has read them, so right after a flush it may still be counting)."""
    for _ in range(100):
        info = await js.consumer_info("OURS", "c")
        if info.num_ack_pending == pending and info.ack_floor.stream_seq == floor:
            return info
        await asyncio.sleep(0.05)
    raise AssertionError(f"ack pending {info.num_ack_pending}, floor {info.ack_floor.stream_seq}; "
                         f"expected {pending} and {floor}")


async def test_ack_all_acks_each_message_once(nc) -> None:  # type: ignore[no-untyped-def]
    js = nc.jetstream()
    await js.add_consumer("OURS", ConsumerConfig(durable_name="c", ack_policy=AckPolicy.EXPLICIT, ack_wait=30))
    await publish_all(nc, [(f"ours.{i}", b"{}", f"a-{i}") for i in range(250)], "")
    sub = await js.pull_subscribe("ours.>", durable="c", stream="OURS")
    msgs: list[Any] = []
    while len(msgs) < 250:
        msgs += await fetch_batch(sub, 250 - len(msgs), 2.0)
    await ack_all(msgs[:200])
    await _acks_settle(js, pending=50, floor=200)
    assert all(m._ackd for m in msgs[:200]) and not any(m._ackd for m in msgs[200:])
    with pytest.raises(nats.errors.MsgAlreadyAckdError):  # one acked already: nothing of the call is sent
        await ack_all([msgs[200], msgs[0]])
    with pytest.raises(nats.errors.MsgAlreadyAckdError):  # one twice: as a second ack() of it would
        await ack_all([msgs[201], msgs[202], msgs[201]])
    assert not any(m._ackd for m in msgs[200:])
    await nc.flush()
    await asyncio.sleep(0.3)
    assert (await js.consumer_info("OURS", "c")).num_ack_pending == 50
    await ack_all(msgs[200:])
    info = await _acks_settle(js, pending=0, floor=250)
    assert info.num_redelivered == 0


async def test_without_the_clients_internals_each_message_goes_through_the_library() -> None:
    class Plain:
        def __init__(self) -> None:
            self.sent: list[tuple[Any, ...]] = []

        async def publish(self, subject: str, body: bytes, reply: str = "", headers: Any = None) -> None:
            self.sent.append((subject, body, reply, headers))

    plain = Plain()
    assert not fast_wire_supported(plain)
    await publish_all(plain, [("s.1", b"a", "i1"), ("s.2", b"b", "i2")], "r")
    assert plain.sent == [("s.1", b"a", "r", {"Nats-Msg-Id": "i1"}), ("s.2", b"b", "r", {"Nats-Msg-Id": "i2"})]

    class Message:
        def __init__(self, client: Any) -> None:
            self._client, self.acked = client, 0

        async def ack(self) -> None:
            self.acked += 1

    messages = [Message(plain), Message(plain)]
    await ack_all(messages)
    assert [m.acked for m in messages] == [1, 1]


async def test_replies_without_headers_reach_the_inline_handler_and_the_rest_the_callback(nc) -> None:  # type: ignore[no-untyped-def]
    inline: list[tuple[bytes, bytes]] = []
    called: list[tuple[str, bytes, Any]] = []
    other: list[bytes] = []

    async def callback(msg: Any) -> None:
        called.append((msg.subject, msg.data, msg.headers))

    async def elsewhere(msg: Any) -> None:
        other.append(msg.data)

    sub = await nc.subscribe("answers.*", cb=callback)
    await nc.subscribe("other.*", cb=elsewhere)
    assert answer_inline(nc, sub, lambda subject, data: inline.append((subject, data)))
    received_before = nc.stats["in_msgs"]
    await nc.publish("answers.1", b'{"seq":1}')
    await nc.publish("answers.2", b"with a header", headers={"Status": "503"})
    await nc.publish("other.1", b"not ours")
    await nc.publish("answers.3", b"")
    await nc.flush()
    for _ in range(100):
        if len(called) == 1 and len(other) == 1:
            break
        await asyncio.sleep(0.01)
    assert inline == [(b"answers.1", b'{"seq":1}'), (b"answers.3", b"")]
    assert called == [("answers.2", b"with a header", {"Status": "503"})]
    assert other == [b"not ours"]
    assert nc.stats["in_msgs"] == received_before + 4
    sid = sub._id
    await sub.unsubscribe()  # a message still on its way for an unsubscribed sid goes nowhere, as before
    await nc._process_msg(sid, b"answers.4", b"", b"late", b"")
    assert len(inline) == 2 and len(called) == 1


async def test_a_reply_the_inline_handler_raises_on_goes_to_the_callback(nc) -> None:  # type: ignore[no-untyped-def]
    called: list[bytes] = []

    async def callback(msg: Any) -> None:
        called.append(msg.data)

    def refuses(subject: bytes, data: bytes) -> None:
        if data == b"bad":
            raise ValueError("not for me")

    sub = await nc.subscribe("raising.*", cb=callback)
    assert answer_inline(nc, sub, refuses)
    for data in (b"good", b"bad", b"good again"):
        await nc.publish("raising.1", data)
    await nc.flush()
    for _ in range(100):
        if called:
            break
        await asyncio.sleep(0.01)
    assert called == [b"bad"]
    await nc.publish("raising.1", b"still read")  # the client goes on reading
    await nc.flush()


async def test_subscriptions_nats_py_handles_its_own_way_are_left_to_it(nc) -> None:  # type: ignore[no-untyped-def]
    async def ignore(msg: Any) -> None:
        return None

    limited = await nc.subscribe("limited.*", cb=ignore, max_msgs=3)
    assert not answer_inline(nc, limited, lambda subject, data: None)
    js_sub = await nc.jetstream().subscribe("ours.>", stream="OURS", cb=ignore)
    assert js_sub._sub._jsi is not None and not answer_inline(nc, js_sub._sub, lambda subject, data: None)


async def test_the_relays_pubacks_are_counted_inline(nc) -> None:  # type: ignore[no-untyped-def]
    from shared.events.relay import PubAcks

    acks = PubAcks(nc)
    counted = []
    original = acks._answer_raw
    acks._answer_raw = lambda subject, data: (counted.append(subject), original(subject, data))  # type: ignore[method-assign]
    await acks.publish([(f"ours.{i}", b"{}", f"inline-{i}") for i in range(50)])
    assert len(counted) == 50 and acks.received == 50


def test_a_client_without_the_internals_keeps_its_callbacks() -> None:
    assert not answer_inline(object(), object(), lambda subject, data: None)
