"""The relay's publisher (``PubAcks``) against a real nats-server: a batch returns only when
JetStream has acknowledged every message of it, and anything JetStream refuses fails the batch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace

import nats
import pytest
from nats.js.api import StorageType, StreamConfig

from guanhuai.embedded import NatsServer
from shared.events.relay import PubAcks, PublishFailed, publish_acked


@pytest.fixture
async def nc(tmp_path: Path) -> AsyncIterator[object]:
    with NatsServer(tmp_path / "nats") as server:
        client = await nats.connect(server.url)
        await client.jetstream().add_stream(StreamConfig(name="T", subjects=["t.>"], storage=StorageType.FILE,
                                                         max_msg_size=1024, duplicate_window=60))
        try:
            yield client
        finally:
            await client.close()


async def test_every_message_of_a_batch_is_stored_once_and_a_resent_batch_adds_nothing(nc) -> None:  # type: ignore[no-untyped-def]
    acks = PubAcks(nc)
    batch = [(f"t.{i % 3}", f'{{"n":{i}}}'.encode(), f"id-{i}") for i in range(250)]
    await acks.publish(batch)
    js = nc.jetstream()
    assert (await js.stream_info("T")).state.messages == 250
    await acks.publish(batch)  # a relay restarted from an older checkpoint: JetStream drops the repeats
    assert (await js.stream_info("T")).state.messages == 250
    last = await js.get_last_msg("T", "t.1")
    assert last.headers["Nats-Msg-Id"] == "id-247" and last.data == b'{"n":247}'


async def test_publish_acked_counts_what_is_stored_and_what_jetstream_had_already(nc) -> None:  # type: ignore[no-untyped-def]
    subscriptions = len(nc._subs)
    first = [(f"t.{i % 3}", f'{{"n":{i}}}'.encode(), f"id-{i}") for i in range(2500)]
    progress: list[int] = []
    assert await publish_acked(nc, first, batch_size=1000, progress=progress.append) == (2500, 0)
    assert progress == [1000, 2000, 2500]
    # A file sent again with 300 more events: only those are stored, the rest are JetStream's duplicates.
    again = first[2200:] + [(f"t.{i % 3}", f'{{"n":{i}}}'.encode(), f"id-{i}") for i in range(2500, 2800)]
    assert await publish_acked(nc, again, batch_size=250) == (300, 300)
    assert (await nc.jetstream().stream_info("T")).state.messages == 2800
    assert len(nc._subs) == subscriptions  # the answers' subscription ends with the publishing


async def test_publish_acked_stops_at_the_batch_jetstream_refuses(nc) -> None:  # type: ignore[no-untyped-def]
    messages = [("t.0", b"{}", f"ok-{i}") for i in range(10)] + [("t.0", b"x" * 2000, "too-big")]
    with pytest.raises(PublishFailed, match="error"):
        await publish_acked(nc, messages, batch_size=5)
    assert (await nc.jetstream().stream_info("T")).state.messages == 10  # the batches before it are stored


def test_an_answer_that_is_no_json_is_not_counted_a_duplicate() -> None:
    from shared.events.relay import _says_duplicate

    assert _says_duplicate(b'{"stream":"T","seq":3,"duplicate": true}') and _says_duplicate(b'{"duplicate":true}')
    assert not _says_duplicate(b'{"stream":"T","seq":3}') and not _says_duplicate(b'{"duplicate": false}')
    assert not _says_duplicate(b'{"duplicate": tru') and not _says_duplicate(b'["duplicate"]')


async def test_a_subject_no_stream_takes_fails_the_batch(nc) -> None:  # type: ignore[no-untyped-def]
    acks = PubAcks(nc, timeout_s=5)
    with pytest.raises(PublishFailed, match="503|no responders|status"):
        await acks.publish([("t.0", b"{}", "a"), ("nowhere.0", b"{}", "b")])


async def test_a_message_jetstream_refuses_fails_the_batch(nc) -> None:  # type: ignore[no-untyped-def]
    acks = PubAcks(nc, timeout_s=5)
    with pytest.raises(PublishFailed, match="error"):
        await acks.publish([("t.0", b"x" * 2000, "too-big")])
    await acks.publish([("t.0", b"{}", "fine")])  # the next try is judged on its own answers
    assert (await nc.jetstream().stream_info("T")).state.messages == 1


async def test_no_answer_in_time_fails_the_batch() -> None:
    class Silent:
        def new_inbox(self) -> str:
            return "_INBOX.silent"

        async def subscribe(self, subject: str, cb: object) -> object:
            return object()

        async def publish(self, *args: object, **kwargs: object) -> None:
            return None

    with pytest.raises(PublishFailed, match="1 of 1 publishes not acknowledged"):
        await PubAcks(Silent(), timeout_s=0.05).publish([("t.0", b"{}", "a")])


async def test_answers_to_an_abandoned_try_do_not_count_for_the_next() -> None:
    class Late:
        """Acknowledges each try's messages with the previous try's reply subject."""

        def __init__(self) -> None:
            self.cb: object = None
            self.replies: list[str] = []

        def new_inbox(self) -> str:
            return "_INBOX.late"

        async def subscribe(self, subject: str, cb: object) -> object:
            self.cb = cb
            return object()

        async def publish(self, subject: str, body: bytes, reply: str, headers: dict[str, str]) -> None:
            self.replies.append(reply)
            if len(self.replies) > 1:
                await self.cb(SimpleNamespace(subject=self.replies[0], data=b'{"stream":"T","seq":1}', headers=None))  # type: ignore[operator]

    late = Late()
    acks = PubAcks(late, timeout_s=0.05)
    for _ in range(2):
        with pytest.raises(PublishFailed):
            await acks.publish([("t.0", b"{}", "a")])
    assert late.replies == ["_INBOX.late.1", "_INBOX.late.2"]


async def test_a_relay_told_to_stop_while_nats_refuses_its_batch_stops_and_keeps_its_checkpoint(tmp_path: Path) -> None:
    # NATS away: the relay retries the batch until it is told to stop; then it ends at once, and
    # the batch stays after the checkpoint, to be published when it runs again.
    import asyncio

    from shared.events.relay import Relay, load_checkpoint
    from shared.events.store import EventStore
    from tests.support.events import household

    store = await EventStore.open(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    try:
        await store.append("household-H1", [household("H1")])
        tries = 0

        async def refused(messages: object) -> None:
            nonlocal tries
            tries += 1
            if tries == 2:
                stop.set()
            raise PublishFailed("no responders")

        relay = Relay(store, SimpleNamespace(new_inbox=lambda: "_INBOX.test"))
        relay.acks.publish = refused  # type: ignore[method-assign]
        stop = asyncio.Event()
        await asyncio.wait_for(relay.run(stop), 10)
        assert tries == 2  # retried once; the failure that came with the stop ended it, with no more waiting
        assert relay.position == 0 and await load_checkpoint(store, "relay") == 0
    finally:
        await store.close()
