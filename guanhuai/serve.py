"""Running one service (or the relay) as a process until SIGTERM / SIGINT."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
from importlib import import_module

from shared.settings import Settings
from shared.events.audit import write_checkpoints_every
from shared.events.broker import close_on_exit, ensure_streams
from shared.events.collector import CONSUMER_YOUNG_THRESHOLD, service_gc
from shared.events.database import SERVICE_SQLITE_CACHE_KIB, SERVICE_SQLITE_CHECKPOINT_BYTES
from shared.events.logs import configure_logging, get_logger
from shared.events.metrics import serve_metrics, set_ready, watch_relay
from shared.events.relay import Relay
from shared.events.store import EventStore
from shared.events.tls import connect_nats

SERVICES = {
    "enrollment": "services.enrollment.bootstrap",
    "subsidy": "services.subsidy.bootstrap",
    "claims": "services.claims.bootstrap",
    "reporting": "services.reporting.bootstrap",
}
COMPONENTS = (*SERVICES, "relay", "api")


async def serve(name: str, settings: Settings) -> None:
    configure_logging(name, json_lines=settings.log_json, level=settings.log_level,
                      library_level=settings.log_library_level)
    profile_dir = os.environ.get("GUANHUAI_PROFILE_DIR")
    if profile_dir:  # for developers: where does a service spend its time?
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            await _serve(name, settings)
        finally:
            profiler.disable()
            profiler.dump_stats(os.path.join(profile_dir, f"{name}.prof"))
        return
    await _serve(name, settings)


async def _serve(name: str, settings: Settings) -> None:
    if name == "api":
        await run_api(settings)  # /metrics, /healthz and /readyz on its own app
        return
    start_metrics(name, settings)
    if name == "relay":
        await run_relay(settings)
        return
    app = import_module(SERVICES[name]).create_app(settings)
    service_gc(CONSUMER_YOUNG_THRESHOLD)  # its consumers collect after every batch
    get_logger().info("service_starting", nats=settings.nats_servers)
    await app.run()


async def run_relay(settings: Settings) -> None:
    log = get_logger()
    store = await EventStore.open(settings.database_url, sqlite_cache_kib=SERVICE_SQLITE_CACHE_KIB,
                                  sqlite_checkpoint_bytes=SERVICE_SQLITE_CHECKPOINT_BYTES)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def on_disconnect() -> None:
        # nats-py calls this on a close of ours too (every normal stop): a warning only when the server went away.
        if stop.is_set():
            log.info("nats_disconnected", reason="stopping")
        else:
            log.warning("nats_disconnected")

    async def on_reconnect() -> None:
        log.info("nats_reconnected")

    service_gc()
    # With NATS away at start, connecting goes on until it is there; a stop meanwhile ends it.
    connecting = asyncio.ensure_future(connect_nats(
        settings.nats_servers, settings.nats_tls_context(), name="guanhuai-relay", max_reconnect_attempts=-1,
        reconnect_time_wait=0.5, disconnected_cb=on_disconnect, reconnected_cb=on_reconnect))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not connecting.done():
        connecting.cancel()
        log.warning("relay_stopped_before_connecting")
        await store.close()
        return
    nc = connecting.result()
    try:
        js = nc.jetstream(timeout=10.0)
        await ensure_streams(js, settings.nats_replicas)
        # Signed audit checkpoints, when configured, are written beside the relay (it always runs).
        checkpoints = ([write_checkpoints_every(store, settings.audit_key, settings.audit_checkpoint_dir,
                                                settings.audit_checkpoint_every_s, stop)]
                       if settings.audit_key and settings.audit_checkpoint_dir else [])
        relay = Relay(store, nc)
        set_ready(lambda: nc.is_connected and relay.started)
        await asyncio.gather(relay.run(stop), watch_relay(store, relay, stop), *checkpoints)
    finally:
        try:
            await close_on_exit(nc, log)
        finally:
            await store.close()


class ApiRefused(Exception):
    """The API would answer anyone on the network: not started (the message says why, in one line)."""


class MetricsPortUnavailable(ApiRefused):
    """The component's metrics port is taken or not allowed: not started (one line, like ApiRefused)."""


def start_metrics(name: str, settings: Settings) -> None:
    """Serve the component's /metrics, /healthz and /readyz on its port (GUANHUAI_METRICS_PORT_<NAME>, 0: off)."""
    port = settings.metrics_port(name)
    try:
        serve_metrics(settings.metrics_host, port)
    except OSError as exc:
        raise MetricsPortUnavailable(
            f"{name} 的监控端口 {settings.metrics_host}:{port} 无法使用（{exc.strerror}）：请换一个 "
            f"GUANHUAI_METRICS_PORT_{name.upper()}，或设为 0 关闭 / the metrics port {settings.metrics_host}:{port} "
            f"of {name} cannot be used ({exc.strerror}): choose another GUANHUAI_METRICS_PORT_{name.upper()}, or 0 for none"
        ) from None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (a name other than localhost may resolve anywhere)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_api_exposure(settings: Settings) -> None:
    """Without a token the API is closed to the network: it listens on loopback only, unless the
    operator says ``--public`` (GUANHUAI_API_PUBLIC=true), which is logged as a warning."""
    if settings.api_token or settings.api_tokens_file or is_loopback(settings.api_host):
        return
    if not settings.api_public:
        raise ApiRefused(
            f"API 未设令牌，不在 {settings.api_host} 上监听：请设置 GUANHUAI_API_TOKEN，或明确使用 --public / "
            f"no GUANHUAI_API_TOKEN: refusing to listen on {settings.api_host} (beyond loopback); "
            "set the token, or say --public (GUANHUAI_API_PUBLIC=true)")
    get_logger().warning("api_public_without_token", host=settings.api_host, port=settings.api_port)


async def run_api(settings: Settings) -> None:
    import uvicorn

    from services.reporting.api import create_api
    from services.reporting.tokens import Tokens

    check_api_exposure(settings)
    tokens = Tokens.read(settings.api_tokens_file) if settings.api_tokens_file else None  # scoped tokens (issue #21)
    api = create_api(settings.database_url, token=settings.api_token, rate_per_s=settings.api_rate_per_s, tokens=tokens)
    config = uvicorn.Config(api, host=settings.api_host, port=settings.api_port,
                            log_config=None, access_log=True)  # log_config=None: uvicorn's lines go to our masking handler
    get_logger().info("api_starting", url=f"http://{settings.api_host}:{settings.api_port}/dashboard")
    await uvicorn.Server(config).serve()
