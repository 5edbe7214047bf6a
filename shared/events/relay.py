"""The relay: publishes every committed event of the log to NATS, in log order, exactly as stored.

It tails the log by position (the log's positions become visible in commit order, so nothing is
skipped), publishes each event on ``guanhuai.events.<EventType>`` with its event id as
``Nats-Msg-Id``, waits for every PubAck of a batch, and only then moves its checkpoint. After a
crash it republishes from the checkpoint: JetStream drops what it has seen within its duplicate
window, and consumers drop what they have handled whatever the window. So an event reaches NATS
only after it is committed, and every committed event reaches NATS.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, MetaData, String, Table, insert, select, update
from .consumer import transient, with_retries
from .logs import get_logger
from .store import EventStore
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
    """The JSON of a ``RecordedEvent`` built from a stored row; the payload text is spliced in as
    stored (it is the hashed JSON, so it is not parsed and re-serialised on the way)."""
    (position, event_id, stream_id, version, event_type, schema_version, occurred_at, recorded_at, source,
     correlation_id, causation_id, payload) = row
    head = json.dumps({
        "event_id": event_id, "event_type": event_type, "schema_version": schema_version,
        "occurred_at": _stamp(occurred_at), "source": source, "correlation_id": correlation_id,
        "causation_id": causation_id, "stream_id": stream_id, "stream_version": version, "position": position,
        "recorded_at": _stamp(recorded_at),
    }, ensure_ascii=False)
    return (head[:-1] + ',"payload":' + payload + "}").encode()


async def load_checkpoint(store: EventStore, name: str) -> int:
    await store.create_schema(metadata)
    async with store.transaction() as tx:
        row = (await tx.connection.execute(select(checkpoints.c.position).where(checkpoints.c.name == name))).first()
        if row is None:
            await tx.connection.execute(insert(checkpoints), {"name": name, "position": 0})
            return 0
        return int(row[0])


async def save_checkpoint(store: EventStore, name: str, position: int) -> None:
    async with store.transaction() as tx:
        await tx.connection.execute(update(checkpoints).where(checkpoints.c.name == name).values(position=position))


class Relay:
    def __init__(self, store: EventStore, js: Any, *, name: str = "relay", batch_size: int = 1000,
                 idle_s: float = 0.05, checkpoint_every_s: float = 2.0) -> None:
        self.store, self.js, self.name = store, js, name
        self.batch_size, self.idle_s = batch_size, idle_s
        self.position = 0
        # The checkpoint is written at most this often (and on stop): after a crash the relay
        # republishes a little, which JetStream and the consumers drop as duplicates, instead of
        # taking the database's write lock after every batch.
        self.checkpoint_every_s = checkpoint_every_s
        self.saved_position = 0
        self.saved_at = 0.0
        self.log = get_logger(component="relay")

    async def run(self, stop: asyncio.Event) -> None:
        self.position = self.saved_position = await with_retries(lambda: load_checkpoint(self.store, self.name))
        self.log.info("relay_started", position=self.position)
        pause = self.idle_s
        try:
            while not stop.is_set():
                try:
                    published = await self.publish_available()
                    if not published:
                        await self.save(force=True)
                    pause = self.idle_s
                except Exception as exc:  # noqa: BLE001 - the database away: wait for it, do not die
                    if not transient(exc):
                        raise
                    published, pause = 0, min(max(pause * 2, 0.1), 5.0)
                    self.log.warning("relay_database_retry", position=self.position, error=type(exc).__name__,
                                     detail=str(exc)[:200], delay_s=pause)
                if not published:
                    try:
                        await asyncio.wait_for(stop.wait(), pause)
                    except asyncio.TimeoutError:
                        pass
        finally:
            await self.save(force=True)

    async def save(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.position != self.saved_position and (force or now - self.saved_at >= self.checkpoint_every_s):
            position = self.position
            await with_retries(lambda: save_checkpoint(self.store, self.name, position))
            self.saved_position, self.saved_at = position, now

    async def publish_available(self) -> int:
        """Publish everything after the checkpoint; returns how many events were published."""
        total = 0
        async for rows in self.store.read_rows(self.position, batch_size=self.batch_size):  # noqa: SIM117
            await self._publish(rows)
            self.position = rows[-1][0]
            await self.save()
            total += len(rows)
        return total

    async def _publish(self, rows: list[Any]) -> None:
        delay = 0.1
        while True:
            try:
                futures = [
                    await self.js.publish_async(event_subject(row[4]), published_body(row), headers={"Nats-Msg-Id": row[1]})
                    for row in rows
                ]
                acks = await asyncio.gather(*futures, return_exceptions=True)
                errors = [a for a in acks if isinstance(a, BaseException)]
                if not errors:
                    self.log.debug("relay_published", first_position=rows[0][0], last_position=rows[-1][0], count=len(rows))
                    return
                raise errors[0]
            except Exception as exc:  # noqa: BLE001 - NATS away or slow: retry the whole batch (deduplicated)
                self.log.warning("relay_publish_retry", first_position=rows[0][0], error=type(exc).__name__,
                                 detail=str(exc)[:200], delay_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
