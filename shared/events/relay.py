"""The relay: publishes every committed event of the log to NATS, in log order, exactly as stored.

It tails the log by position (the log's positions become visible in commit order, so nothing is
skipped), publishes each event on ``guanhuai.events.<EventType>`` with its event id as
``Nats-Msg-Id``, waits for every PubAck of a batch, and only then moves its checkpoint. After a
crash it republishes from the checkpoint: JetStream drops what it has seen within its duplicate
window, and consumers drop what they have handled whatever the window. So an event reaches NATS
only after it is committed, and every committed event reaches NATS.

PubAcks are collected on one inbox subscription (:class:`PubAcks`) rather than with nats-py's
``publish_async``, which spends a future, a timer and a parsed ``PubAck`` dataclass on every
message: that bookkeeping was most of the relay's CPU, at about four events per household. Each
message is sent with nats-py's public ``publish`` (a reply subject and the ``Nats-Msg-Id``
header), and the answers come to the subscription's callback; nothing of nats-py's internals is
used.
"""

from __future__ import annotations

import asyncio
import json
from json.encoder import encode_basestring as _text
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, select, update
from .consumer import transient, with_retries
from .logs import get_logger
from .metrics import PUBLISHED, RELAY_POSITION
from .store import EventStore, Transaction
from .subjects import event_subject
from .tables import utc_text

metadata = MetaData()
checkpoints = Table(
    "relay_checkpoints",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("position", BigInteger, nullable=False),
)


def _stamp(value: str | datetime) -> str:
    return value if isinstance(value, str) else utc_text(value)


def published_body(row: Any) -> bytes:
    """The JSON of a ``RecordedEvent`` built from a stored row; the payload is spliced in as
    stored (it is the hashed JSON, so it is not parsed and re-serialised on the way): as text, or
    as its UTF-8 bytes (what the relay reads from SQLite, which then needs neither decoding into a
    str nor encoding back, 1.5 of about 10 µs an event here).

    The envelope is written out field by field, each text through the json module's own string
    encoder (what ``json.dumps(..., ensure_ascii=False)`` does with it), the integers as integers:
    the same bytes as dumping the envelope as a dict, in a third of the time (the relay does this
    for every event of the log)."""
    (position, event_id, stream_id, version, event_type, schema_version, occurred_at, recorded_at, source,
     correlation_id, causation_id, payload) = row
    causation = "null" if causation_id is None else _text(causation_id)
    head = (
        f'{{"event_id": {_text(event_id)}, "event_type": {_text(event_type)}, "schema_version": {schema_version:d}, '
        f'"occurred_at": {_text(_stamp(occurred_at))}, "source": {_text(source)}, '
        f'"correlation_id": {_text(correlation_id)}, "causation_id": {causation}, "stream_id": {_text(stream_id)}, '
        f'"stream_version": {version:d}, "position": {position:d}, "recorded_at": {_text(_stamp(recorded_at))},'
        f'"payload":'
    )
    if isinstance(payload, bytes):
        return head.encode() + payload + b"}"
    return f"{head}{payload}}}".encode()


def _says_duplicate(data: bytes) -> bool:
    """A PubAck's ``"duplicate": true`` (read as JSON: the server's spacing is its own)."""
    try:
        answer = json.loads(data)
    except ValueError:
        return False
    return isinstance(answer, dict) and answer.get("duplicate") is True


class PublishFailed(Exception):
    """JetStream refused or did not answer a publish of the batch in time."""


class _Stopped(Exception):
    """The relay was told to stop while a batch could not be published (NATS away): the batch
    stays after the checkpoint and is published when the relay runs again."""


class PubAcks:
    """Publish a batch and wait for JetStream's answer to every message of it.

    Every message of a try carries the same reply subject (``<inbox>.<try>``); one subscription on
    ``<inbox>.*`` counts the answers. A PubAck is JSON without an ``error`` member; anything else
    (an API error, a "no responders" status with no body) fails the try, and the caller tries the
    whole batch again under a new reply subject, so late answers to an abandoned try are ignored."""

    def __init__(self, nc: Any, timeout_s: float = 10.0) -> None:
        self.nc, self.timeout_s = nc, timeout_s
        self.prefix = nc.new_inbox()
        self.subscription: Any = None
        self.tries = 0
        self.reply = ""
        self.expected = self.received = 0
        self.duplicates = 0  # of this try's answers, how many said JetStream had the message already
        self.error: str | None = None
        self.done = asyncio.Event()

    async def _answer(self, msg: Any) -> None:
        if msg.subject == self.reply:
            self._count(msg.data, msg.headers)

    def _count(self, data: bytes, headers: dict[str, str] | None) -> None:
        """One answer to this try's reply subject."""
        if data[:1] == b"{" and b'"error"' not in data:
            duplicate = b'"duplicate"' in data and _says_duplicate(data)
            self.received += 1
            if duplicate:
                self.duplicates += 1
        elif self.error is None:
            status = (headers or {}).get("Status", "")
            self.error = data.decode("utf-8", "replace")[:300] or f"status {status or 'unknown'} {(headers or {}).get('Description', '')}".strip()
        if self.received >= self.expected or self.error is not None:
            self.done.set()

    async def close(self) -> None:
        """End the answers' subscription (a later ``publish`` starts a new one)."""
        if self.subscription is not None:
            subscription, self.subscription = self.subscription, None
            if not self.nc.is_closed:
                await subscription.unsubscribe()

    async def publish(self, messages: Sequence[tuple[str, bytes, str]]) -> None:
        """``messages``: (subject, body, event id). Returns when every one is acknowledged."""
        if self.subscription is None:
            self.subscription = await self.nc.subscribe(f"{self.prefix}.*", cb=self._answer)
        self.tries += 1
        self.reply = reply = f"{self.prefix}.{self.tries}"
        self.expected, self.received, self.duplicates, self.error = len(messages), 0, 0, None
        self.done.clear()
        publish = self.nc.publish
        for subject, body, msg_id in messages:
            await publish(subject, body, reply=reply, headers={"Nats-Msg-Id": msg_id})
        try:
            await asyncio.wait_for(self.done.wait(), self.timeout_s)
        except asyncio.TimeoutError:
            raise PublishFailed(f"{self.expected - self.received} of {self.expected} publishes not acknowledged "
                                f"within {self.timeout_s} s") from None
        if self.error is not None:
            raise PublishFailed(self.error)


async def publish_acked(nc: Any, messages: Sequence[tuple[str, bytes, str]], *, batch_size: int = 1000,
                        progress: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Publish ``messages`` (subject, body, message id), ``batch_size`` at a time, each batch
    written at once and acknowledged message by message before the next (:class:`PubAcks`);
    returns (stored now, already there: JetStream's duplicates). ``progress`` is told how many
    have been acknowledged after each batch. A batch JetStream refuses raises
    :class:`PublishFailed`; the batches before it are stored."""
    acks, stored, duplicates = PubAcks(nc), 0, 0
    try:
        for start in range(0, len(messages), batch_size):
            batch = messages[start : start + batch_size]
            await acks.publish(batch)
            stored += len(batch) - acks.duplicates
            duplicates += acks.duplicates
            if progress is not None:
                progress(stored + duplicates)
    finally:
        await acks.close()
    return stored, duplicates


async def load_checkpoint(store: EventStore, name: str) -> int:
    await store.create_schema(metadata)

    def load(tx: Transaction) -> int:
        row = tx.connection.execute(select(checkpoints.c.position).where(checkpoints.c.name == name)).first()
        if row is None:
            tx.connection.execute(insert(checkpoints), {"name": name, "position": 0})
            return 0
        return int(row[0])

    return await store.write(load)


async def save_checkpoint(store: EventStore, name: str, position: int) -> None:
    await store.write(lambda tx: tx.connection.execute(
        update(checkpoints).where(checkpoints.c.name == name).values(position=position)))


class Relay:
    """``nc``: a connected nats-py client (the streams exist already: see ``ensure_streams``)."""

    def __init__(self, store: EventStore, nc: Any, *, name: str = "relay", batch_size: int = 1000,
                 idle_s: float = 0.05, checkpoint_every_s: float = 2.0) -> None:
        self.store, self.name = store, name
        self.acks = PubAcks(nc)
        self.batch_size, self.idle_s = batch_size, idle_s
        self.position = 0
        # The checkpoint is written at most this often while publishing, and whenever the relay has
        # caught up: after a crash the relay republishes a little, which JetStream and the
        # consumers drop as duplicates, instead of taking the database's write lock after every
        # batch. It is written in the background: waiting for the write lock (the services hold
        # it while they decide) must not hold up publishing.
        self.checkpoint_every_s = checkpoint_every_s
        self.saved_position = 0
        self.saved_at = 0.0
        self._saving: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()  # run's; set, it ends the retries of a batch that NATS refuses
        self.started = False  # its checkpoint is read: the database answers (for /readyz)
        self.log = get_logger(component="relay")

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self.position = self.saved_position = await with_retries(lambda: load_checkpoint(self.store, self.name))
        self.started = True
        RELAY_POSITION.set(self.position)
        self.log.info("relay_started", position=self.position)
        pause = self.idle_s
        try:
            while not stop.is_set():
                try:
                    published = await self.publish_available()
                    if not published:
                        self.save(caught_up=True)
                    pause = self.idle_s
                except _Stopped:
                    self.log.warning("relay_stopped_unpublished", position=self.position)
                    break
                except Exception as exc:  # noqa: BLE001 - the database away: wait for it, do not die
                    if not transient(exc):
                        raise
                    published, pause = 0, min(max(pause * 2, 0.1), 5.0)
                    self.log.warning("relay_database_retry", position=self.position, error=type(exc).__name__,
                                     detail=str(exc), delay_s=pause)
                if not published:
                    try:
                        await asyncio.wait_for(stop.wait(), pause)
                    except asyncio.TimeoutError:
                        pass
        finally:
            await self.flush()

    def save(self, caught_up: bool = False) -> None:
        """Start writing the checkpoint in the background if it moved, none is being written, and
        it is due (or the relay has caught up). A write that failed is raised here, the next time,
        to the loop that handles the database being away."""
        if self._saving is not None:
            if not self._saving.done():
                return
            failed, self._saving = self._saving.exception(), None
            if failed is not None:
                raise failed
        if self.position != self.saved_position and (caught_up or time.monotonic() - self.saved_at >= self.checkpoint_every_s):
            self.saved_at = time.monotonic()
            self._saving = asyncio.create_task(self._write(self.position))

    async def flush(self) -> None:
        """Wait for a checkpoint being written, then write the latest position (on stop)."""
        if self._saving is not None:
            saving, self._saving = self._saving, None
            try:
                await saving
            except Exception as exc:  # noqa: BLE001 - the write below says the same, or succeeds
                self.log.warning("relay_checkpoint_failed", error=type(exc).__name__, detail=str(exc))
        if self.position != self.saved_position:
            await self._write(self.position)

    async def _write(self, position: int) -> None:
        await with_retries(lambda: save_checkpoint(self.store, self.name, position))
        self.saved_position = max(self.saved_position, position)

    async def publish_available(self) -> int:
        """Publish everything after the checkpoint; returns how many events were published."""
        total = 0
        async for rows in self.store.read_rows(self.position, batch_size=self.batch_size,  # noqa: SIM117
                                               columns=self.store.row_columns):
            await self._publish(rows)
            self.position = rows[-1][0]
            RELAY_POSITION.set(self.position)
            self.save()
            total += len(rows)
        return total

    async def _publish(self, rows: list[Any]) -> None:
        messages = [(event_subject(row[4]), published_body(row), row[1]) for row in rows]
        delay = 0.1
        while True:
            try:
                await self.acks.publish(messages)
                self.log.debug("relay_published", first_position=rows[0][0], last_position=rows[-1][0], count=len(rows))
                for event_type, count in Counter(row[4] for row in rows).items():
                    PUBLISHED.labels(event_type).inc(count)
                return
            except Exception as exc:  # noqa: BLE001 - NATS away or slow: retry the whole batch (deduplicated)
                if self._stop.is_set():
                    raise _Stopped from exc
                self.log.warning("relay_publish_retry", first_position=rows[0][0], error=type(exc).__name__,
                                 detail=str(exc), delay_s=delay)
                try:  # a stop ends the wait
                    await asyncio.wait_for(self._stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                delay = min(delay * 2, 5.0)
