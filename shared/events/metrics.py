"""Prometheus metrics, ``/healthz`` and ``/readyz`` of one component (docs/operations.md, "Monitor").

One process runs one component, so the metrics live in prometheus_client's default registry. The
numbers are counted where they already are (a service's batch in :mod:`.broker`, the relay in
:mod:`.relay`); consumer lag is polled from JetStream every few seconds. The HTTP side is
prometheus_client's own WSGI app behind wsgiref in a daemon thread, with two more paths: it
answers while the event loop is busy, and a process that hangs stops answering ``/healthz`` only
when the whole process does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import Counter, Gauge, Histogram, make_wsgi_app

from .logs import get_logger

CONSUMED = Counter("guanhuai_messages_consumed", "Messages delivered to a consumer (redeliveries counted again)", ["consumer"])
HANDLED = Counter("guanhuai_messages_handled", "Inputs handled and committed", ["consumer"])
DUPLICATES = Counter("guanhuai_messages_duplicate", "Inputs already handled before (dropped)", ["consumer"])
DEAD_LETTERED = Counter("guanhuai_messages_dead_lettered", "Inputs recorded as dead letters", ["consumer", "reason"])
REDELIVER = Counter("guanhuai_messages_redeliver", "Inputs nak'ed to be delivered again", ["consumer"])
REDELIVERED = Counter("guanhuai_messages_redelivered", "Messages that arrived after an earlier delivery", ["consumer"])
BATCH_SECONDS = Histogram("guanhuai_batch_duration_seconds", "Time to handle one batch, database waits included",
                          ["consumer"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
PENDING = Gauge("guanhuai_consumer_pending", "Messages of the stream not yet delivered to the consumer (its lag)",
                ["consumer"])
ACK_PENDING = Gauge("guanhuai_consumer_ack_pending", "Messages delivered to the consumer and not yet acked", ["consumer"])
GIVEN_UP = Counter("guanhuai_given_up_dead_lettered", "Inputs JetStream gave up on (max_deliver), dead-lettered",
                   ["consumer"])
RELAY_POSITION = Gauge("guanhuai_relay_position", "Log position the relay has published up to")
RELAY_HEAD = Gauge("guanhuai_relay_log_head", "The log's head position, as the relay last read it")
RELAY_LAG = Gauge("guanhuai_relay_lag_events", "Events committed to the log and not yet published")
PUBLISHED = Counter("guanhuai_events_published", "Events the relay published, by type (rejections are events)",
                    ["event_type"])

POLL_S = 5.0  # how often lag is read from JetStream or the log


class _Readiness:
    """Whether the component is ready: a check set once it has started (None: not yet)."""

    def __init__(self) -> None:
        self.check: Callable[[], bool] | None = None

    def __call__(self) -> bool:
        try:
            return self.check is not None and bool(self.check())
        except Exception:  # noqa: BLE001 - a check that cannot tell is "not ready"
            return False


ready = _Readiness()


def set_ready(check: Callable[[], bool]) -> None:
    ready.check = check


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the scrapes are not log lines
        pass


def _app() -> Callable[..., Any]:
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ok = path == "/healthz" or ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ok\n" if ok else b"not ready\n"]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    return app


def serve_metrics(host: str, port: int) -> WSGIServer | None:
    """Serve /metrics, /healthz and /readyz on ``host:port`` in a daemon thread (port 0: off)."""
    if not port:
        return None
    server = make_server(host, port, _app(), server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    get_logger().info("metrics_serving", url=f"http://{host}:{port}/metrics")
    return server


def count_batch(consumer: str, size: int, redelivered: int, result: Any, seconds: float) -> None:
    """One batch of a service (``result``: its :class:`.consumer.BatchResult`)."""
    CONSUMED.labels(consumer).inc(size)
    REDELIVERED.labels(consumer).inc(redelivered)
    HANDLED.labels(consumer).inc(result.handled)
    DUPLICATES.labels(consumer).inc(result.duplicates)
    DEAD_LETTERED.labels(consumer, "input").inc(result.dead_lettered)
    REDELIVER.labels(consumer).inc(len(result.failed))
    BATCH_SECONDS.labels(consumer).observe(seconds)


def count_given_up(consumer: str, dead_lettered: int) -> None:
    GIVEN_UP.labels(consumer).inc(dead_lettered)
    DEAD_LETTERED.labels(consumer, "max_deliveries").inc(dead_lettered)


async def watch_consumers(js: Any, consumers: Sequence[tuple[str, str]], every_s: float = POLL_S) -> None:
    """Keep the lag gauges of ``consumers`` (stream, durable) current until cancelled."""
    for _, durable in consumers:  # present from the start, even before the first poll answers
        PENDING.labels(durable)
        ACK_PENDING.labels(durable)
    while True:
        for stream, durable in consumers:
            try:
                info = await js.consumer_info(stream, durable)
            except Exception:  # noqa: BLE001 - NATS away: the gauges keep their last value; readiness says it
                continue
            PENDING.labels(durable).set(info.num_pending or 0)
            ACK_PENDING.labels(durable).set(info.num_ack_pending or 0)
        await asyncio.sleep(every_s)


async def watch_relay(store: Any, relay: Any, stop: asyncio.Event, every_s: float = POLL_S) -> None:
    """Keep the relay's lag behind the log head current until ``stop``."""
    while not stop.is_set():
        try:
            head = await store.head_position()
        except Exception:  # noqa: BLE001 - the database away: the relay itself says so
            head = None
        if head is not None:
            RELAY_HEAD.set(head)
            RELAY_LAG.set(max(0, head - relay.position))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except asyncio.TimeoutError:
            pass
