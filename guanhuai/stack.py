"""Running the whole system on one machine: an embedded nats-server (unless a NATS URL is given),
the relay, the four services and the reporting API, each its own process."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from guanhuai.embedded import NatsServer, free_port
from shared.events.store import EventStore
from shared.events.subjects import EVENTS_STREAM, inbound_stream
from shared.events.tls import connect_nats

COMPONENTS = ("relay", "enrollment", "subsidy", "claims", "reporting", "api")
CONSUMERS = (
    (inbound_stream("county"), "enrollment-county-v1"),
    (EVENTS_STREAM, "subsidy-v1"),
    (inbound_stream("insurer"), "claims-insurer-v1"),
    (EVENTS_STREAM, "claims-v1"),
    (EVENTS_STREAM, "reporting-v1"),
)
STATE_FILE = "stack.json"
LOCK_FILE = "stack.lock"


def hold_lock(data_dir: Path) -> IO[str]:
    """Hold ``data_dir/stack.lock`` for as long as the returned file stays open (the kernel lets go
    when the process ends, however it ends). A second stack on the same data directory would share
    the log and NATS store and, stopping, remove the first one's stack.json: it is refused, naming
    the process that holds the lock. The services' processes do not inherit it (close_fds)."""
    from guanhuai.errors import Expected

    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / LOCK_FILE).open("a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise Expected(f"{data_dir} 上已有运行中的 guanhuai（进程 {holder}）：先停止它，或换一个 GUANHUAI_DATA_DIR",
                       f"a guanhuai stack is already running on {data_dir} (pid {holder}): stop it first, "
                       "or use another GUANHUAI_DATA_DIR") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


@dataclass
class Stack:
    data_dir: Path
    db_url: str
    nats_url: str | None = None
    api_port: int | None = None
    log_level: str = "INFO"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    nats_server: NatsServer | None = None
    lock: IO[str] | None = None

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"

    def start(self, components: tuple[str, ...] = COMPONENTS) -> Stack:
        self.lock = hold_lock(self.data_dir)
        self.logs.mkdir(parents=True, exist_ok=True)
        if self.nats_url is None:
            self.nats_server = NatsServer(self.data_dir / "nats", log_file=self.logs / "nats-server.log").start()
            self.nats_url = self.nats_server.url
        self.api_port = self.api_port or free_port()
        for name in components:
            self._spawn(name)
        return self

    def _spawn(self, name: str) -> None:
        env = dict(os.environ)
        if self.nats_server is not None:  # the embedded server is local and plain text
            for key in [k for k in env if k.startswith("GUANHUAI_NATS_TLS")]:
                del env[key]
        env.update(GUANHUAI_DB_URL=self.db_url, GUANHUAI_NATS_URL=self.nats_url or "", GUANHUAI_LOG_JSON="true",
                   GUANHUAI_LOG_LEVEL=self.log_level, GUANHUAI_API_PORT=str(self.api_port))
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "guanhuai", "serve", name], env=env,
            stdout=(self.logs / f"{name}.log").open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        (self.data_dir / STATE_FILE).write_text(json.dumps(self.describe(), indent=2))

    def restart(self, name: str) -> None:
        self.processes.pop(name, None)
        self._spawn(name)

    def describe(self) -> dict[str, Any]:
        return {"nats_url": self.nats_url, "nats_embedded": self.nats_server is not None, "db_url": self.db_url,
                "dashboard": self.dashboard_url, "api_port": self.api_port, "logs": str(self.logs), "up_pid": os.getpid(),
                "pids": {n: p.pid for n, p in self.processes.items()}}

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/dashboard"

    def exited(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.poll() is not None]

    async def wait_ready(self, js: Any, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                for stream, durable in CONSUMERS:
                    if durable.split("-")[0] in self.processes:
                        await js.consumer_info(stream, durable)
                return
            except Exception:  # noqa: BLE001 - consumers not created yet
                if self.exited():
                    raise RuntimeError(f"{', '.join(self.exited())} stopped; see {self.logs}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"services did not start within {timeout}s; see {self.logs}") from None
                await asyncio.sleep(0.2)

    async def caught_up(self, js: Any, store: EventStore) -> tuple[bool, dict[str, int]]:
        """Every service has handled all it was sent, the relay has published the whole log and
        the reporting read model is at the log's head."""
        head = await store.head_position()
        published = (await js.stream_info(EVENTS_STREAM)).state.last_seq
        lag: dict[str, int] = {"log_head": head, "unpublished": max(head - published, 0)}
        for stream, durable in CONSUMERS:
            if durable.split("-")[0] not in self.processes:
                continue
            info = await js.consumer_info(stream, durable)
            lag[durable] = info.num_pending + info.num_ack_pending
        from services.reporting.storage import PROJECTION
        from services.reporting.tables import checkpoint

        from sqlalchemy import select

        query = select(checkpoint.c.position).where(checkpoint.c.name == PROJECTION)
        row = await store.read(lambda conn: conn.execute(query).first())
        lag["reporting_behind"] = head - (int(row[0]) if row else 0)
        done = all(v == 0 for k, v in lag.items() if k != "log_head")
        return done, lag

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        if self.nats_server:
            self.nats_server.stop()
        if self.lock is not None:  # only the stack holding the lock wrote stack.json: it is ours to remove
            (self.data_dir / STATE_FILE).unlink(missing_ok=True)
            self.lock.close()
            self.lock = None


async def connect(url: str, tls: ssl.SSLContext | None = None, timeout: float | None = None) -> Any:
    """A command-line NATS connection; ``tls`` from ``Settings.nats_tls_context()`` (None: plain text).

    With ``timeout`` (the commands' ``--connect-timeout``) it takes at most that long and tries each
    server a few times, silently (nats-py would log every failed try with a traceback), then fails
    with one line naming the server(s). Without, it retries for ever (a stack waiting for its NATS)."""
    if timeout is None:
        return await connect_nats(url, tls, max_reconnect_attempts=-1, reconnect_time_wait=0.5, name="guanhuai-cli")
    import nats.errors

    from guanhuai.errors import Expected
    from guanhuai.ops import _mask_url

    failures: list[Exception] = []

    async def quiet_error(exc: Exception) -> None:
        failures.append(exc)

    async def quiet_disconnect() -> None:  # a command's connection ends with the command: nothing to say
        return None

    try:
        return await asyncio.wait_for(
            connect_nats(url, tls, name="guanhuai-cli", connect_timeout=timeout, max_reconnect_attempts=2,
                         reconnect_time_wait=0.5, error_cb=quiet_error, disconnected_cb=quiet_disconnect), timeout)
    except (OSError, nats.errors.Error) as exc:
        shown = ",".join(_mask_url(u.strip()) for u in url.split(","))
        cause = failures[-1] if failures and not isinstance(exc, ConnectionError) else exc
        reason = (str(cause) or type(cause).__name__).splitlines()[0][:200]
        raise Expected(f"无法连接 NATS {shown}（{timeout:g} 秒内）：{reason}",
                       f"cannot reach NATS at {shown} within {timeout:g} s: {reason}") from exc
