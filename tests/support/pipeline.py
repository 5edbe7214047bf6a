"""A running pipeline for end-to-end tests: an own nats-server on a free port with a temporary
store, and the components (relay, enrollment, subsidy, claims, reporting) as real processes,
one or more instances of each (instances of a service share its durable consumers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import nats

from guanhuai.embedded import NatsServer
from shared.events import EventMessage
from shared.events.store import EventStore
from shared.events.subjects import EVENTS_STREAM, inbound_stream, inbound_subject

COMPONENTS = ("relay", "enrollment", "subsidy", "claims", "reporting")
CONSUMERS = ((inbound_stream("county"), "enrollment-county-v1"), (EVENTS_STREAM, "subsidy-v1"), (inbound_stream("insurer"), "claims-insurer-v1"),
             (EVENTS_STREAM, "claims-v1"), (EVENTS_STREAM, "reporting-v1"))


PERMISSIONS = Path(__file__).resolve().parents[2] / "infra" / "nats" / "permissions.conf"
USERS = ("county", "insurer", "services", "reader", "operator", "admin")


def passwords() -> dict[str, str]:
    """The nats-server environment that permissions.conf takes each user's password from."""
    return {f"GUANHUAI_NATS_{u.upper()}_PASSWORD": f"pw-{u}" for u in USERS}


class Pipeline:
    """``secured``: the nats-server runs with the production accounts (infra/nats/permissions.conf),
    the components connect as ``services``, the test publishes as ``county`` / ``insurer`` and
    observes as ``operator``, each on its private inbox prefix. ``nats``: the NATS to run on
    instead of a single server of its own, e.g. a :class:`tests.support.cluster.NatsCluster` (its
    ``url`` lists every node, comma-separated; a cluster of the shipped files needs ``secured``)."""

    def __init__(self, workdir: Path, db_url: str, instances: int = 1, secured: bool = False,
                 nats: Any = None) -> None:
        self.workdir = workdir
        self.db_url = db_url
        self.instances = instances
        self.secured = secured
        self.nats = nats or NatsServer(workdir / "nats", config=PERMISSIONS.read_text() if secured else None,
                                       env=passwords() if secured else None)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: list[Path] = []
        self.nc: Any = None
        self.js: Any = None
        self.producers: dict[str, Any] = {}  # producer kind -> its JetStream context
        self.producer_connections: list[Any] = []
        self.extra_env: dict[str, str] = {}  # more GUANHUAI_* settings for every component (e.g. metrics ports)

    def url_of(self, user: str) -> str:
        """The server's URL with ``user``'s credentials (the bare URL when not secured)."""
        return self.nats.url.replace("nats://", f"nats://{user}:pw-{user}@") if self.secured else self.nats.url

    # -- processes ---------------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        return dict(os.environ, GUANHUAI_DB_URL=self.db_url, GUANHUAI_NATS_URL=self.url_of("services"),
                    GUANHUAI_LOG_JSON="true", GUANHUAI_LOG_LEVEL="INFO", **self.extra_env)

    def start_component(self, name: str, instance: int = 1) -> str:
        """Start one instance of a component; returns its key (``name``, or ``name#2`` for a
        second instance), which :meth:`kill` takes."""
        key = name if instance == 1 else f"{name}#{instance}"
        log = self.workdir / f"{key.replace('#', '-')}-{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.processes[key] = subprocess.Popen(
                [sys.executable, "-m", "guanhuai", "serve", name], env=self.env(), stdout=out,
                stderr=subprocess.STDOUT,
            )
        return key

    def kill(self, key: str) -> None:
        """kill -9: no chance to finish, ack or commit anything."""
        process = self.processes.pop(key)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def running(self) -> set[str]:
        """The components with at least one live instance."""
        return {key.split("#")[0] for key, p in self.processes.items() if p.poll() is None}

    def exited(self) -> dict[str, int]:
        """Instances that ended by themselves (not killed by the test), with their exit codes."""
        return {key: p.returncode for key, p in self.processes.items() if p.poll() is not None}

    def check_alive(self) -> None:
        """Fail at once (rather than at a timeout) when a component ended by itself."""
        exited = self.exited()
        if exited:
            raise RuntimeError(f"components ended by themselves: {exited}\n{self.tail_logs()}")

    async def start(self) -> Pipeline:
        self.nats.start()
        for name in COMPONENTS:
            for instance in range(1, self.instances + 1):
                self.start_component(name, instance)
        await self.connect()
        await self.wait_ready()
        return self

    async def connect(self) -> None:
        self.nc = await self._connect_as("operator")
        self.js = self.nc.jetstream(timeout=10)
        if self.secured:
            for kind in ("county", "insurer"):
                connection = await self._connect_as(kind)
                self.producer_connections.append(connection)
                self.producers[kind] = connection.jetstream(timeout=10)

    async def _connect_as(self, user: str) -> Any:
        return await nats.connect(self.url_of(user).split(","), max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                  inbox_prefix=f"_INBOX_{user}" if self.secured else "_INBOX")

    def producer(self, subject: str) -> Any:
        """The JetStream context that may publish on ``subject`` (the producer kind's own)."""
        return self.producers.get(subject.split(".")[2], self.js) if self.secured else self.js

    async def wait_ready(self, timeout: float = 60) -> None:
        await self.wait_ready_for(tuple(durable for _, durable in CONSUMERS), timeout)

    async def wait_ready_for(self, durables: tuple[str, ...], timeout: float = 60) -> None:
        """Until the durable consumers named exist (their services have started)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                for stream, durable in CONSUMERS:
                    if durable in durables:
                        await self.js.consumer_info(stream, durable)
                return
            except Exception:  # noqa: BLE001 - not there yet
                if time.monotonic() > deadline:
                    raise TimeoutError(f"consumers not ready; logs: {self.tail_logs()}") from None
                for name, p in self.processes.items():
                    if p.poll() is not None:
                        raise RuntimeError(f"{name} exited with {p.returncode}: {self.tail_logs()}")
                await asyncio.sleep(0.1)

    async def stop(self) -> None:
        if self.nc is not None:
            await self.nc.close()
            self.nc = None
        for connection in self.producer_connections:
            await connection.close()
        self.producer_connections.clear()
        self.producers.clear()
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        self.processes.clear()
        self.nats.stop()

    def all_output(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def tail_logs(self, chars: int = 3000) -> str:
        return self.all_output()[-chars:]

    # -- producers ---------------------------------------------------------------------------
    async def publish(self, kind: str, messages: Iterable[EventMessage]) -> int:
        count = 0
        for message in messages:
            subject = inbound_subject(kind, message.event_type)
            await self.producer(subject).publish(subject, message.model_dump_json().encode(),
                                                 headers={"Nats-Msg-Id": str(message.event_id)})
            count += 1
        return count

    async def publish_raw(self, subject: str, body: bytes, msg_id: str) -> None:
        await self.producer(subject).publish(subject, body, headers={"Nats-Msg-Id": msg_id})

    # -- observing ---------------------------------------------------------------------------
    async def counts(self) -> Counter[str]:
        store = await EventStore.open(self.db_url, create=False)
        try:
            counter: Counter[str] = Counter()
            async for batch in store.read_rows(0, batch_size=5000):
                counter.update(row[4] for row in batch)
            return counter
        finally:
            await store.close()

    async def wait_for(self, predicate: Callable[[Counter[str]], bool], timeout: float = 90) -> Counter[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                counts = await self.counts()
            except Exception:  # noqa: BLE001 - the log may not exist yet
                counts = Counter()
            if predicate(counts):
                return counts
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"gave up waiting; log has {dict(counts)}\n{self.tail_logs()}")
            await asyncio.sleep(0.25)

    async def settled(self, quiet_s: float = 1.5, timeout: float = 90) -> Counter[str]:
        """Wait until the log stops growing, the relay has published all of it and every
        consumer of the recorded events has handled all it was sent."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            counts = await self.counts()
            total = sum(counts.values())
            info = await self.js.stream_info(EVENTS_STREAM)
            busy = False
            for stream, durable in CONSUMERS:
                if durable.split("-")[0] in self.running() or durable.startswith("claims"):
                    ci = await self.js.consumer_info(stream, durable)
                    busy = busy or ci.num_pending > 0 or ci.num_ack_pending > 0
            self.check_alive()
            if total != last or info.state.messages < total or busy:
                last, since = total, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return counts
            await asyncio.sleep(0.25)
        raise TimeoutError(f"pipeline did not settle\n{self.tail_logs()}")
