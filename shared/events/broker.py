"""NATS JetStream wiring shared by the services: streams, durable consumers, and a FastStream
application that feeds batches of raw messages to :func:`shared.events.consumer.process_batch`.

Choices made on purpose (see DESIGN.md, "FastStream and NATS: known traps"):
* Streams and consumers are created or updated here with nats-py (``add_consumer`` updates an
  existing durable's settings, which FastStream would silently keep). FastStream runs the
  application (its start, its stop, the connection); the consumers are pulled by our own loops.
* Batches of raw bytes: bad input is ours to explain.
* A message is acked only after its effect (or its dead letter) is committed; what failed is
  nak'ed with a delay and comes back, up to ``max_deliver`` times, and on its last delivery it is
  dead-lettered instead of dropped.
* Each consumer is pulled by a loop of ours (:class:`PullLoop`) with nats-py's public
  ``PullSubscription.fetch``, not by FastStream's batch subscriber: nats-py 2.16's ``fetch`` can
  raise a bare ``asyncio.TimeoutError`` that FastStream's batch loop does not catch, which drops
  the part of a batch it had collected until ``ack_wait`` (upstream: nats-io/nats.py PR #1008).
  Acks are nats-py's own ``msg.ack()``. Nothing of nats-py's or FastStream's internals is used.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
from faststream import FastStream
from faststream.exceptions import IncorrectState
from faststream.nats import ConsumerConfig, NatsBroker
from faststream.nats.security import NatsSecurity
from nats.js.api import DeliverPolicy, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from .collector import after_batch
from .given_up import GIVEN_UP_STREAM, ensure_given_up, ensure_stream, given_up_subject, sweep, sweeper_durable
from .consumer import Handler, Incoming, process_batch
from .logs import get_logger
from .metrics import count_batch, count_given_up, set_ready, watch_consumers
from .store import EventStore
from .subjects import EVENTS_PREFIX, EVENTS_STREAM, INBOUND_STREAMS, LEGACY_INBOUND_STREAM, inbound_subjects
from .tls import NOT_TLS_FIRST, inbox_prefix_for, sessions_of, tls_since

STREAM_MAX_MSG_BYTES = 1024 * 1024  # the server's payload limit; services dead-letter above 256 KiB
DUPLICATE_WINDOW_S = 2 * 3600.0  # JetStream de-duplication; exactly-once does not depend on it
HELD_LOUD_AFTER_S = 60.0  # a batch held this long for a database that is away is logged as an error
# Up to this many messages a batch (one log transaction): fewer commits, and each random-key index
# page written once for more of its rows. 500 -> 2,000 took `bench pipeline` from about 2,900 to
# 3,600 households/s on the same machine; 4,000 gained nothing more. A trickle is not held up: a
# fetch returns what has come within the spec's batch_timeout_s.
BATCH_SIZE = 2000

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
        await ensure_stream(js, config)


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



def _connection_or_none(broker: NatsBroker) -> Any:
    try:
        return broker.connection
    except IncorrectState:  # not connected (or stopped)
        return None


class ServiceBroker(NatsBroker):
    """FastStream's NATS broker, stopped without a traceback when NATS is away: FastStream's own
    ``stop`` drains the connection, which nats-py refuses while it reconnects (and which raised,
    ending the process with a traceback, when a service was stopped during a NATS outage). Then the
    connection is closed at once (:func:`close_on_exit`)."""

    async def stop(self, exc_type: Any = None, exc_val: Any = None, exc_tb: Any = None) -> None:
        nc = _connection_or_none(self)
        log = get_logger(component="broker")
        away = nc is not None and not nc.is_closed and (nc.is_connecting or nc.is_reconnecting)
        if away:
            await close_on_exit(nc, log)  # closed at once (and said): the drain below is refused
        try:
            await super().stop(exc_type, exc_val, exc_tb)
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError, ConnectionError,
                OSError) as exc:
            if not away:  # the server went away during the drain
                log.warning("stopped_without_drain", reason="NATS went away while draining", detail=str(exc))
                if nc is not None and not nc.is_closed:
                    try:
                        await nc.close()
                    except (ConnectionError, OSError):
                        pass
            self.config.disconnect()


def _connect_options(nats_url: str | Sequence[str], tls: ssl.SSLContext | None) -> dict[str, Any]:
    """What :class:`ServiceBroker` connects with, as :func:`shared.events.tls.connect_nats` connects
    every other client of ours: the credential's private inbox prefix, and with ``tls`` the TLS
    handshake first on every connection (FastStream's ``NatsSecurity(tls_handshake_first=True)``).
    A failed TLS handshake on the first connection ends it with an error (a configuration mistake,
    not an outage); a reconnection found in plain text closes the client."""
    servers = list(nats_url) if not isinstance(nats_url, str) else [nats_url]
    options: dict[str, Any] = {"inbox_prefix": inbox_prefix_for(servers)}
    if tls is None:
        return options
    state: dict[str, Any] = {"connected": False, "nc": None, "seen": sessions_of(tls)}
    log = logging.getLogger("guanhuai.nats")

    def server_name() -> str:
        uri = state["nc"].connected_url if state["nc"] is not None else None
        return f"{uri.hostname}:{uri.port}" if uri is not None else servers[0].rpartition("@")[-1]

    async def on_error(exc: Exception) -> None:
        # On the first connection nats-py would retry a failed handshake forever.
        if not state["connected"] and isinstance(exc, ssl.SSLError):
            if getattr(exc, "reason", None) == "WRONG_VERSION_NUMBER":  # it answered the handshake in plain text
                raise ConnectionError(NOT_TLS_FIRST.format(server=server_name())) from exc
            raise exc
        log.warning("nats error: %r", exc)

    async def on_reconnected() -> None:
        nc = state["nc"]
        if nc is not None and not tls_since(tls, state["seen"]):
            log.error(NOT_TLS_FIRST.format(server=server_name()))
            await nc.close()
            return
        state["seen"] = sessions_of(tls)

    def connected(nc: Any) -> None:
        """Called with the first connection: checked for TLS (raises ConnectionError without)."""
        state["nc"] = nc
        if not tls_since(tls, state["seen"]):
            raise ConnectionError(NOT_TLS_FIRST.format(server=server_name()))
        state["seen"] = sessions_of(tls)
        state["connected"] = True

    options.update(security=NatsSecurity(ssl_context=tls, tls_handshake_first=True), error_cb=on_error,
                   reconnected_cb=on_reconnected, connected=connected)
    return options


def delivery_of(msg: Any) -> tuple[str, int, int]:
    """(stream, stream sequence, deliveries so far) of a JetStream message, read off its reply
    subject as nats-py's ``msg.metadata`` reads it, without building that (two frozen dataclasses
    and a datetime for the timestamp, about 4 µs a message). The reply is
    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>``;
    any other form (the one with a domain and an account hash among them) goes to nats-py's
    ``metadata``, which reads that too and refuses what is no JetStream reply."""
    tokens = msg.reply.split(".") if msg.reply else ()
    if len(tokens) == 9 and tokens[0] == "$JS" and tokens[1] == "ACK":
        return tokens[2], int(tokens[5]), int(tokens[4])
    metadata = msg.metadata
    return metadata.stream, metadata.sequence.stream, metadata.num_delivered


async def fetch_up_to(psub: Any, batch: int, timeout: float) -> list[Any]:
    """Up to ``batch`` messages of the pull subscription ``psub`` (nats-py's), taking at most about
    ``timeout`` seconds; an empty list when none came. nats-py's public ``fetch`` may return part
    of a batch early (what the server had at hand): it is called again for the rest until the
    batch is full or the time is up. Its timeouts, nats' ``TimeoutError`` and the bare
    ``asyncio.TimeoutError`` nats-py 2.16 also raises, end the batch with what came."""
    msgs: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(msgs) < batch:
        remaining = deadline - time.monotonic()
        if remaining < 0.001:  # nats-py asks the server to expire the request 0.1 ms before
            break
        try:
            msgs += await psub.fetch(batch - len(msgs), timeout=remaining)
        except asyncio.TimeoutError:  # nats.errors.TimeoutError is one too
            break
    return msgs


async def ack_all(msgs: Sequence[Any]) -> None:
    """Ack each message with nats-py's ``Msg.ack``."""
    for msg in msgs:
        await msg.ack()


async def nak_all(msgs: Sequence[Any], delay: float | None = None) -> None:
    for msg in msgs:
        await msg.nak(delay=delay)


class PullLoop:
    """Pulls one durable consumer in batches (:func:`fetch_up_to`) and hands each batch to
    ``handle``, which acks or naks every message of it. A full batch (a backlog) has the next one
    fetched while it is handled, so that the next batch is at hand when this one is done (one
    fetch at a time: nats-py's fetches of one subscription share its queue). :meth:`stop` lets the
    batch in hand be finished (within ``graceful_s``) and naks what was fetched and not handed
    over, so that it comes back at once rather than after ``ack_wait``."""

    def __init__(self, stream: str, durable: str, batch_size: int, timeout_s: float,
                 handle: Callable[[list[Any]], Awaitable[None]]) -> None:
        self.stream, self.durable, self.batch_size, self.timeout_s = stream, durable, batch_size, timeout_s
        self.handle = handle
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.subscription: Any = None
        self.log = get_logger(consumer=durable)

    def start(self, js: JetStreamContext) -> None:
        self.task = asyncio.create_task(self._run(js), name=f"pull {self.durable}")

    async def _run(self, js: JetStreamContext) -> None:
        # Bound to the durable declared by ensure_consumer, on the connection's private inbox.
        self.subscription = psub = await js.pull_subscribe_bind(self.durable, self.stream)
        ahead: asyncio.Task[list[Any]] | None = None
        pause = 0.1
        try:
            while not self.stopping.is_set():
                try:
                    if ahead is not None:
                        fetching, ahead = ahead, None
                        msgs = await fetching
                    else:
                        msgs = await fetch_up_to(psub, self.batch_size, self.timeout_s)
                except nats.errors.ConnectionClosedError:
                    return
                except Exception as exc:  # noqa: BLE001 - NATS away or refusing: try again in a while
                    self.log.warning("fetch_failed", error=type(exc).__name__, detail=str(exc), retry_in_s=pause)
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, 5.0)
                    continue
                pause = 0.1
                if not msgs:
                    continue
                if self.stopping.is_set():
                    await _release(msgs, self.log)
                    return
                if len(msgs) == self.batch_size:
                    ahead = asyncio.create_task(fetch_up_to(psub, self.batch_size, self.timeout_s))
                try:
                    await self.handle(msgs)
                except Exception as exc:  # noqa: BLE001 - unacked, the batch comes back after ack_wait
                    self.log.error("batch_failed", size=len(msgs), error=type(exc).__name__, detail=str(exc),
                                   exc_info=exc)
        finally:
            if ahead is not None:
                await self._release_ahead(ahead)

    async def _release_ahead(self, ahead: asyncio.Task[list[Any]]) -> None:
        """Nak what the fetch ahead brought (it ends within the batch's time)."""
        try:
            msgs = await asyncio.wait_for(ahead, self.timeout_s + 5.0)
        except BaseException:  # noqa: BLE001 - failed or cancelled: nothing held, or back after ack_wait
            ahead.cancel()
            return
        await _release(msgs, self.log)

    async def stop(self, graceful_s: float) -> None:
        self.stopping.set()
        if self.task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self.task), graceful_s)
            except asyncio.TimeoutError:
                self.task.cancel()
                self.log.warning("batch_not_finished_before_stop", graceful_s=graceful_s)
            except Exception as exc:  # noqa: BLE001 - e.g. the bind failed: said, and the stop goes on
                self.log.warning("pull_loop_failed", error=type(exc).__name__, detail=str(exc))
        if self.subscription is not None:
            subscription, self.subscription = self.subscription, None
            try:
                await subscription.unsubscribe()
            except Exception:  # noqa: BLE001, S110 - closed or away: nothing to end
                pass


async def _release(msgs: Sequence[Any], log: Any) -> None:
    if not msgs:
        return
    try:
        await nak_all(msgs)
    except Exception as exc:  # noqa: BLE001 - NATS going away: they come back after ack_wait
        log.warning("fetched_ahead_not_released", error=type(exc).__name__, detail=str(exc))
        return
    log.info("fetched_ahead_released", messages=len(msgs))


GRACEFUL_S = 30.0


def build_app(nats_url: str | Sequence[str], store: EventStore, specs: Sequence[ConsumerSpec], *, name: str,
              replicas: int = 1, tls: ssl.SSLContext | None = None) -> tuple[FastStream, NatsBroker]:
    """The FastStream application of one service. Nothing connects until it starts. ``tls``:
    the context from :func:`shared.events.tls.nats_tls_context` (None: plain text)."""
    options = _connect_options(nats_url, tls)
    connected = options.pop("connected", None)
    broker = ServiceBroker(list(nats_url) if not isinstance(nats_url, str) else nats_url, graceful_timeout=GRACEFUL_S,
                           logger=logging.getLogger("faststream.guanhuai"), log_level=logging.DEBUG,
                           name=name, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                           js_options={"timeout": 10.0, "publish_async_max_pending": 4000}, **options)
    loops = [loop for spec in specs for loop in (_sweeper(broker, store, spec), _consumer(store, spec))]
    app = FastStream(broker)

    @app.on_startup
    async def declare() -> None:
        nc = await broker.connect()
        if connected is not None:
            try:
                connected(nc)
            except ConnectionError:
                await broker.stop()
                raise
        js = nc.jetstream()
        await ensure_streams(js, replicas)
        for spec in specs:
            await ensure_given_up(js, spec.stream, spec.durable, replicas)  # before the consumer can give up
            await ensure_consumer(js, spec)

    watching: list[asyncio.Task[None]] = []

    @app.after_startup
    async def watch() -> None:
        # Every on_startup step is done here: NATS connected, consumers declared, tables created.
        js = broker.connection.jetstream()
        for loop in loops:
            loop.start(js)
        watching.append(asyncio.create_task(watch_consumers(js, [(s.stream, s.durable) for s in specs])))
        set_ready(lambda: broker.connection.is_connected)

    @app.on_shutdown
    async def unwatch() -> None:
        set_ready(lambda: False)
        for task in watching:
            task.cancel()
        # Each loop finishes the batch in hand (within GRACEFUL_S), then the broker drains and closes.
        await asyncio.gather(*(loop.stop(GRACEFUL_S) for loop in loops))

    return app, broker


async def _in_progress(raws: Sequence[Any], every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        for raw in raws:
            try:
                await raw.in_progress()
            except Exception:  # noqa: BLE001 - NATS away too: the messages come back after ack_wait
                break


def _sweeper(broker: NatsBroker, store: EventStore, spec: ConsumerSpec) -> PullLoop:
    """Turn JetStream's max-deliveries advisories for ``spec``'s consumer into dead letters (see
    :mod:`shared.events.given_up`); what cannot be written is nak'ed and comes back."""
    log = get_logger(consumer=spec.durable)

    async def given_up(raws: list[Any]) -> None:
        try:
            stored, handled = await sweep(store, spec.handler, broker.connection.jetstream(), [m.data for m in raws])
        except Exception as exc:  # noqa: BLE001 - never acked unwritten: the advisories come back
            log.error("given_up_not_dead_lettered", error=type(exc).__name__, detail=str(exc), advisories=len(raws),
                      retry_in_s=spec.retry_delay_s)
            await nak_all(raws, delay=spec.retry_delay_s)
            return
        await ack_all(raws)
        count_given_up(spec.durable, stored)
        log.info("given_up_swept", advisories=len(raws), dead_lettered=stored, found_handled=handled)

    return PullLoop(GIVEN_UP_STREAM, sweeper_durable(spec.durable), 100, 0.5, given_up)


def _consumer(store: EventStore, spec: ConsumerSpec) -> PullLoop:
    log = get_logger(consumer=spec.durable)

    async def consume(raws: list[Any]) -> None:
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
        await ack_all(done)
        count_batch(spec.durable, len(raws), sum(i.delivered > 1 for i in incoming), result, time.monotonic() - started)
        if result.handled or result.dead_lettered or result.failed:
            log.info("batch_done", size=len(raws), handled=result.handled, duplicates=result.duplicates,
                     dead_lettered=result.dead_lettered, redeliver=len(result.failed),
                     first_seq=incoming[0].sequence, last_seq=incoming[-1].sequence, **result.timings)
        del incoming, result
        after_batch()  # the batch's objects are freed: collect while the young generation is nearly empty

    return PullLoop(spec.stream, spec.durable, spec.batch_size, spec.batch_timeout_s, consume)
