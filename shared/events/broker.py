"""NATS JetStream wiring shared by the services: streams, durable consumers, and a FastStream
application that feeds batches of raw messages to :func:`shared.events.consumer.process_batch`.

Choices made on purpose (see DESIGN.md, "FastStream and NATS: known traps"):
* Streams and consumers are created or updated here with nats-py (``add_consumer`` updates an
  existing durable's settings, which FastStream would silently keep); FastStream only binds.
* Batches of raw bytes (``decoder`` returns the body untouched): bad input is ours to explain.
* ``AckPolicy.MANUAL``: a message is acked only after its effect (or its dead letter) is
  committed; what failed is nak'ed with a delay and comes back, up to ``max_deliver`` times,
  and on its last delivery it is dead-lettered instead of dropped.
* nats-py 2.16 raises a bare ``asyncio.TimeoutError`` inside ``fetch`` that FastStream's batch
  loop does not catch, dropping partly collected batches until ``ack_wait``; :func:`fix_nats_fetch`
  turns it into nats' own TimeoutError (upstream: nats-io/nats.py PR #1008). It also fetches
  batches with :func:`shared.events.pull.fetch_batch`, which waits once per burst of messages
  instead of once per message, and, when a batch is full, asks for the next one before handing
  this one over (what is fetched ahead and not handled by a stop is nak'ed, to come back at once).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import nats.errors
from faststream import AckPolicy, Context, FastStream
from faststream.nats import ConsumerConfig, JStream, NatsBroker, NatsRouter, PullSub
from faststream.nats.message import NatsBatchMessage
from faststream.nats.prometheus import NatsPrometheusMiddleware
from prometheus_client import REGISTRY
from faststream.security import BaseSecurity
from nats.js.api import DeliverPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from .collector import after_batch
from .given_up import GIVEN_UP_STREAM, ensure_given_up, given_up_subject, sweep, sweeper_durable
from .consumer import Handler, Incoming, process_batch
from .logs import get_logger
from .metrics import count_batch, count_given_up, set_ready, watch_consumers
from .pull import delivery_of, fast_fetch_supported, fetch_batch, release_queued
from .store import EventStore
from .subjects import EVENTS_PREFIX, EVENTS_STREAM, INBOUND_STREAMS, LEGACY_INBOUND_STREAM, inbound_subjects
from .tls import connect_nats
from .wire import ack_all

STREAM_MAX_MSG_BYTES = 1024 * 1024  # the server's payload limit; services dead-letter above 256 KiB
DUPLICATE_WINDOW_S = 2 * 3600.0  # JetStream de-duplication; exactly-once does not depend on it
HELD_LOUD_AFTER_S = 60.0  # a batch held this long for a database that is away is logged as an error
# Up to this many messages a batch (one log transaction): fewer commits, and each random-key index
# page written once for more of its rows. 500 -> 2,000 took `bench pipeline` from about 2,900 to
# 3,600 households/s on the same machine; 4,000 gained nothing more. A trickle is not held up: a
# fetch returns what has come within the spec's batch_timeout_s.
BATCH_SIZE = 2000

_fetch_fixed = False


def fix_nats_fetch() -> None:
    global _fetch_fixed
    if _fetch_fixed:
        return
    original = JetStreamContext.PullSubscription.fetch

    async def fetch(self, batch: int = 1, timeout: float | None = 5, heartbeat: float | None = None) -> Any:  # type: ignore[no-untyped-def]
        try:
            if batch > 1 and fast_fetch_supported(self):
                return await fetch_batch(self, batch, timeout, heartbeat, prefetch=True)  # see pull.py
            return await original(self, batch, timeout, heartbeat)
        except nats.errors.TimeoutError:
            raise
        except asyncio.TimeoutError as exc:
            raise nats.errors.TimeoutError from exc

    JetStreamContext.PullSubscription.fetch = fetch  # type: ignore[method-assign]
    _fetch_fixed = True


def stream_configs(replicas: int = 1) -> list[StreamConfig]:
    common = dict(storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_S, max_msg_size=STREAM_MAX_MSG_BYTES,
                  num_replicas=replicas)
    return [
        # One stream per producer kind, each with its own duplicate window: one producer's
        # Nats-Msg-Ids cannot shadow another's. Only the kinds a service consumes: a message on
        # guanhuai.in.<anything else> would be stored and never read (lost in silence); without a
        # stream for it, the sender is told.
        *(StreamConfig(name=stream, subjects=[inbound_subjects(kind)], description=f"what {kind} systems send",
                       **common) for kind, stream in INBOUND_STREAMS.items()),
        StreamConfig(name=EVENTS_STREAM, subjects=[f"{EVENTS_PREFIX}.>"],
                     description="every recorded event, in log order", **common),
    ]


class InboundStreamUpgrade(RuntimeError):
    """The single inbound stream of an earlier version is still there (see :func:`ensure_streams`)."""


LEGACY_STREAM_LINE = (
    "NATS 仍有旧版入站流 {stream}，请按 docs/operations.md“升级：每个生产方一个入站流”处理后再启动 / "
    "the inbound stream {stream} of an earlier version still exists: let the previous version drain it "
    "(guanhuai status: its consumers at 0 pending), delete it as the NATS operator (nats stream rm {stream}), "
    "then start this version (docs/operations.md, \"Upgrading to one inbound stream per producer\")"
)


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create or update the streams. Refuses (:class:`InboundStreamUpgrade`, one line) while the
    earlier single inbound stream exists: it holds the producers' subjects (NATS refuses streams
    with overlapping subjects), and it may hold inputs not yet recorded, which only an operator who
    has seen them drained may delete (the services' credential cannot delete a stream)."""
    try:
        await js.stream_info(LEGACY_INBOUND_STREAM)
        raise InboundStreamUpgrade(LEGACY_STREAM_LINE.format(stream=LEGACY_INBOUND_STREAM))
    except nats.js.errors.NotFoundError:
        pass
    for config in stream_configs(replicas):
        try:
            await js.stream_info(config.name)  # type: ignore[arg-type]
            await js.update_stream(config)
        except nats.js.errors.NotFoundError:
            await js.add_stream(config)


@dataclass(frozen=True)
class ConsumerSpec:
    handler: Handler
    stream: str
    filter_subjects: tuple[str, ...]
    batch_size: int = BATCH_SIZE
    batch_timeout_s: float = 0.05
    ack_wait_s: float = 10.0  # in-flight messages of a killed instance come back after this
    max_deliver: int = 5
    retry_delay_s: float = 2.0

    @property
    def durable(self) -> str:
        return self.handler.consumer


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    """Create the durable, or update the settings of an existing one (delivery policy aside)."""
    await js.add_consumer(spec.stream, ConsumerConfig(
        durable_name=spec.durable, name=spec.durable, filter_subjects=list(spec.filter_subjects),
        deliver_policy=DeliverPolicy.ALL, ack_wait=spec.ack_wait_s, max_deliver=spec.max_deliver,
        max_ack_pending=max(1000, spec.batch_size * 4),
    ))


async def _raw_body(message: Any) -> Any:
    # A coroutine on purpose: FastStream runs a plain-function decoder in a worker thread, a
    # thread hop for every batch.
    return message.body


async def close_on_exit(nc: Any, log: Any) -> None:
    """Drain a NATS connection on the way out (pending publishes and acks are flushed, then it
    closes), or, with the server away, close it at once: a drain needs the server, and nats-py
    refuses one while it reconnects. What was delivered and not acked comes back after
    ``ack_wait``; the relay republishes from its checkpoint."""
    if nc.is_closed:
        return
    if not (nc.is_connecting or nc.is_reconnecting):
        try:
            await nc.drain()
            return
        except (nats.errors.ConnectionReconnectingError, nats.errors.ConnectionClosedError):
            pass  # the server went away meanwhile
    log.warning("stopped_without_drain", reason="NATS is away")
    try:
        await nc.close()
    except (ConnectionError, OSError):
        # nats-py flushes what it had buffered (acks, pull requests) into the lost connection
        # before closing, and raises; that data could not have reached the server anyway.
        pass


class _Broker(NatsBroker):
    """FastStream's NATS broker, connecting through :func:`shared.events.tls.connect_nats` (TLS
    from the first byte and never plain text when a TLS context is given) instead of
    ``nats.connect``; FastStream hands it the same connection options. Stopped, it ends its
    connection with :func:`close_on_exit`: FastStream's own ``stop`` drains it, which raised (and
    ended the process with a traceback) when the service was stopped during a NATS outage."""

    async def _connect(self) -> Any:
        connection = await connect_nats(**self._connection_kwargs)
        self.config.connect(connection)
        return connection

    async def stop(self, exc_type: Any = None, exc_val: Any = None, exc_tb: Any = None) -> None:
        # NatsBroker.stop, with its drain replaced: the subscribers stop first (each finishes the
        # batch in hand, within graceful_timeout), then what was fetched ahead is handed back,
        # then the connection ends.
        pulls = [s.subscription for s in self.subscribers if getattr(s, "subscription", None) is not None]
        await super(NatsBroker, self).stop(exc_type, exc_val, exc_tb)
        if self._connection is not None:
            log = get_logger(component="broker")
            if self._connection.is_connected:
                for psub in pulls:
                    try:
                        if released := await release_queued(psub):
                            log.info("fetched_ahead_released", messages=released)
                    except Exception as exc:  # noqa: BLE001 - NATS going away: they come back after ack_wait
                        log.warning("fetched_ahead_not_released", error=type(exc).__name__, detail=str(exc))
                        break
            await close_on_exit(self._connection, log)
            self._connection = None
        self.config.disconnect()


def build_app(nats_url: str | Sequence[str], store: EventStore, specs: Sequence[ConsumerSpec], *, name: str,
              replicas: int = 1, tls: ssl.SSLContext | None = None) -> tuple[FastStream, NatsBroker]:
    """The FastStream application of one service. Nothing connects until it starts. ``tls``:
    the context from :func:`shared.events.tls.nats_tls_context` (None: plain text)."""
    fix_nats_fetch()
    broker = _Broker(list(nats_url) if not isinstance(nats_url, str) else nats_url, graceful_timeout=30.0,
                        security=BaseSecurity(ssl_context=tls) if tls is not None else None,
                        logger=logging.getLogger("faststream.guanhuai"), log_level=logging.DEBUG,
                        name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                        js_options={"timeout": 10.0, "publish_async_max_pending": 4000},
                        # FastStream's own per-subject counters and timings (faststream_* on /metrics)
                        middlewares=[NatsPrometheusMiddleware(registry=REGISTRY, app_name=name)])
    router = NatsRouter()
    for spec in specs:
        _subscribe(router, store, spec)
        _sweep_given_up(router, broker, store, spec)
    broker.include_router(router)
    app = FastStream(broker)

    @app.on_startup
    async def declare() -> None:
        await broker.connect()
        js = broker.connection.jetstream()
        await ensure_streams(js, replicas)
        for spec in specs:
            await ensure_given_up(js, spec.stream, spec.durable, replicas)  # before the consumer can give up
            await ensure_consumer(js, spec)

    watching: list[asyncio.Task[None]] = []

    @app.after_startup
    async def watch() -> None:
        # Every on_startup step is done here: NATS connected, consumers declared, tables created.
        watching.append(asyncio.create_task(watch_consumers(broker.connection.jetstream(),
                                                            [(s.stream, s.durable) for s in specs])))
        set_ready(lambda: broker.connection.is_connected)

    @app.on_shutdown
    async def unwatch() -> None:
        set_ready(lambda: False)
        for task in watching:
            task.cancel()

    return app, broker


async def _in_progress(raws: Sequence[Any], every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        for raw in raws:
            try:
                await raw.in_progress()
            except Exception:  # noqa: BLE001 - NATS away too: the messages come back after ack_wait
                break


def _sweep_given_up(router: NatsRouter, broker: NatsBroker, store: EventStore, spec: ConsumerSpec) -> None:
    """Turn JetStream's max-deliveries advisories for ``spec``'s consumer into dead letters (see
    :mod:`shared.events.given_up`); what cannot be written is nak'ed and comes back."""
    log = get_logger(consumer=spec.durable)

    @router.subscriber(
        given_up_subject(spec.stream, spec.durable),
        stream=JStream(GIVEN_UP_STREAM, declare=False),
        durable=sweeper_durable(spec.durable),
        pull_sub=PullSub(batch_size=100, batch=True, timeout=0.5),
        ack_policy=AckPolicy.MANUAL,
        inbox_prefix=None,  # type: ignore[arg-type] # the connection's private inbox (tls.connect_nats), not FastStream's _INBOX.
        decoder=_raw_body,
        title=sweeper_durable(spec.durable),
    )
    async def given_up(body: list[bytes], msg: Annotated[NatsBatchMessage, Context("message")]) -> None:
        raws = msg.raw_message
        try:
            stored, handled = await sweep(store, spec.handler, broker.connection.jetstream(), [m.data for m in raws])
        except Exception as exc:  # noqa: BLE001 - never acked unwritten: the advisories come back
            log.error("given_up_not_dead_lettered", error=type(exc).__name__, detail=str(exc), advisories=len(raws),
                      retry_in_s=spec.retry_delay_s)
            for raw in raws:
                await raw.nak(delay=spec.retry_delay_s)
            return
        await ack_all(list(raws))
        count_given_up(spec.durable, stored)
        log.info("given_up_swept", advisories=len(raws), dead_lettered=stored, found_handled=handled)


def _subscribe(router: NatsRouter, store: EventStore, spec: ConsumerSpec) -> None:
    log = get_logger(consumer=spec.durable)

    @router.subscriber(
        spec.filter_subjects[0],
        stream=JStream(spec.stream, declare=False),
        durable=spec.durable,
        pull_sub=PullSub(batch_size=spec.batch_size, batch=True, timeout=spec.batch_timeout_s),
        ack_policy=AckPolicy.MANUAL,
        inbox_prefix=None,  # type: ignore[arg-type] # the connection's private inbox (tls.connect_nats), not FastStream's _INBOX.
        decoder=_raw_body,
        title=spec.durable,
    )
    async def consume(body: list[bytes], msg: Annotated[NatsBatchMessage, Context("message")]) -> None:
        raws = msg.raw_message
        incoming = []
        for m in raws:
            stream, sequence, delivered = delivery_of(m)
            incoming.append(Incoming(subject=m.subject, body=m.data, headers=dict(m.headers or {}), stream=stream,
                                     sequence=sequence, delivered=delivered))
        if (most := max(i.delivered for i in incoming)) > 1:
            # Delivered before and never acked: a nak'ed retry, or a service that died holding the
            # batch. After max_deliver JetStream gives up and the sweeper dead-letters them.
            log.warning("batch_redelivered", size=len(raws), most_deliveries=most, max_deliver=spec.max_deliver,
                        redelivered=sum(i.delivered > 1 for i in incoming))
        # While the batch is in hand, tell JetStream now and then that it is being worked on, so
        # that a slow or retried batch is not redelivered under our feet.
        heartbeat = asyncio.create_task(_in_progress(raws, spec.ack_wait_s / 3))
        started = time.monotonic()
        try:
            result = await process_batch(store, spec.handler, incoming, max_deliver=spec.max_deliver)
            pause, held_since = 0.5, time.monotonic()
            while result.transient:
                # The database is away. A nak would spend one of the batch's max_deliver
                # deliveries, and once they are spent JetStream drops the message: keep the batch
                # and try again until the database is back (or the service is stopped). Past a
                # minute it is an operator's matter: said at error level, with how long.
                held_s = round(time.monotonic() - held_since, 1)
                (log.error if held_s >= HELD_LOUD_AFTER_S else log.warning)(
                    "batch_held_database_away", size=len(raws), delay_s=pause, held_s=held_s)
                await asyncio.sleep(pause)
                pause = min(pause * 2, 5.0)
                result = await process_batch(store, spec.handler, incoming, max_deliver=spec.max_deliver)
        finally:
            heartbeat.cancel()
        failed = {id(m) for m in result.failed}
        done = []
        for raw, inc in zip(raws, incoming, strict=True):
            if id(inc) in failed:
                await raw.nak(delay=spec.retry_delay_s)
            else:
                done.append(raw)
        await ack_all(done)  # one write for the batch's acks (each message still acked on its own)
        count_batch(spec.durable, len(raws), sum(i.delivered > 1 for i in incoming), result, time.monotonic() - started)
        if result.handled or result.dead_lettered or result.failed:
            log.info("batch_done", size=len(raws), handled=result.handled, duplicates=result.duplicates,
                     dead_lettered=result.dead_lettered, redeliver=len(result.failed),
                     first_seq=incoming[0].sequence, last_seq=incoming[-1].sequence, **result.timings)
        del incoming, result  # (FastStream holds the raw messages until this returns)
        after_batch()  # the batch's objects are freed: collect while the young generation is nearly empty
