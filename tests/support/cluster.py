"""The shipped three-node JetStream cluster (infra/nats/node-{1,2,3}.conf) on loopback, for the
tests: each node's configuration is the shipped file with only its addresses (client, monitoring,
cluster listen and routes: free ports on 127.0.0.1) and its store directory (a temporary one)
replaced, and ``sync_interval`` when a measurement asks for another one. Every replacement must
find its line exactly once: when a shipped file changes shape, this fails rather than starting a
cluster that is not the shipped one. The nodes include the shipped permissions.conf (copied beside
each node's configuration, where ``include`` looks), so clients need the accounts' passwords.

``python -m tests.support.cluster`` measures JetStream publish throughput of guanhuai's stream
configuration (R3, file storage) on the cluster for each ``sync_interval`` named, and with
``--pipeline N`` households/s through the pipeline on it (see
docs/operations.md, "A three-node NATS cluster: tested under faults, fsync before acknowledging")."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import nats

from guanhuai.embedded import NatsServer, free_port, nats_server_binary
from tests.support.pipeline import PERMISSIONS, Pipeline, passwords

INFRA = PERMISSIONS.parent
NODES = (1, 2, 3)


class ShippedConfigChanged(ValueError):
    """A line that the adaptation replaces is not in the shipped file exactly once."""


def adapted_config(node: int, *, client_port: int, http_port: int, cluster_ports: dict[int, int], store_dir: Path,
                   sync_interval: str | None = None) -> str:
    """infra/nats/node-<node>.conf with loopback ports and ``store_dir`` (and ``sync_interval``)."""
    text = (INFRA / f"node-{node}.conf").read_text()
    replacements = [
        (r"^listen: 0\.0\.0\.0:4222$", f"listen: 127.0.0.1:{client_port}"),
        (r"^http: 0\.0\.0\.0:8222\b", f"http: 127.0.0.1:{http_port}"),
        (r"^  store_dir: /var/lib/guanhuai/nats$", f"  store_dir: {store_dir}"),
        (r"^  listen: 0\.0\.0\.0:6222$", f"  listen: 127.0.0.1:{cluster_ports[node]}"),
        *((rf"^    nats-route://guanhuai-{n}:6222$", f"    nats-route://127.0.0.1:{cluster_ports[n]}") for n in NODES),
    ]
    if sync_interval is not None:  # "default": the line taken out (nats-server's own default, 2 minutes)
        replacements.append((r"^  sync_interval: \S+$",
                             "" if sync_interval == "default" else f"  sync_interval: {sync_interval}"))
    for pattern, replacement in replacements:
        text, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        if found != 1:
            raise ShippedConfigChanged(f"infra/nats/node-{node}.conf: {pattern!r} matched {found} lines, not 1")
    return text


class ClusterNode(NatsServer):
    """One node: the adapted shipped configuration and the shipped permissions.conf beside it."""

    def __init__(self, number: int, store_dir: Path, port: int, http_port: int, config: str) -> None:
        super().__init__(store_dir, port=port, config=config, env=passwords())
        self.number, self.http_port = number, http_port
        self.name = f"guanhuai-{number}"  # server_name in the shipped file

    def start(self, timeout: float = 15.0) -> ClusterNode:
        """``nats-server -c <the adapted file>`` and nothing else on the command line (a flag such
        as ``-sd`` beside the file's ``store_dir`` is refused as a duplicate)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PERMISSIONS, self.store_dir / PERMISSIONS.name)
        config_file = self.store_dir / "nats-server.conf"
        config_file.write_text(self.config or "")
        self.process = subprocess.Popen([nats_server_binary(), "-c", str(config_file), "-l", str(self.log_file)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        env={**os.environ, **(self.env or {})})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {error}; see {self.log_file}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} did not listen on {self.port} within {timeout}s")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def monitor(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=2) as answer:
            return json.loads(answer.read())

    def healthy(self) -> bool:
        """/healthz: JetStream up, current with the meta leader, its streams and consumers current."""
        try:
            return bool(self.monitor("/healthz").get("status") == "ok")
        except Exception:  # noqa: BLE001 - 503 while it catches up, refused while it starts
            return False

    def stream_states(self) -> dict[str, tuple[int, int]]:
        """This node's own copy of each stream: (messages, last sequence), from /jsz."""
        jsz = self.monitor("/jsz?accounts=true&streams=true")
        return {s["name"]: (s["state"]["messages"], s["state"]["last_seq"])
                for account in jsz.get("account_details", []) for s in account.get("stream_detail", [])}


class NatsCluster:
    """Three nodes of the shipped cluster. Takes the place of a single NatsServer in a
    :class:`tests.support.pipeline.Pipeline` (``url`` lists every node, comma-separated)."""

    def __init__(self, workdir: Path, sync_interval: str | None = None) -> None:
        cluster_ports = {n: free_port() for n in NODES}
        self.nodes: dict[int, ClusterNode] = {}
        for n in NODES:
            port, http_port, store = free_port(), free_port(), workdir / f"node-{n}"
            config = adapted_config(n, client_port=port, http_port=http_port, cluster_ports=cluster_ports,
                                    store_dir=store, sync_interval=sync_interval)
            self.nodes[n] = ClusterNode(n, store, port, http_port, config)

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes.values())

    def start(self, timeout: float = 60.0) -> NatsCluster:
        for node in self.nodes.values():
            node.start()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Until every running node reports healthy (a meta leader elected; a restarted node
        caught up with its streams)."""
        deadline = time.monotonic() + timeout
        while not all(node.healthy() for node in self.nodes.values() if node.running):
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not healthy within {timeout}s: "
                                   f"{ {n.name: n.healthy() for n in self.nodes.values()} }")
            time.sleep(0.1)

    def stop(self, kill: bool = False) -> None:
        for node in self.nodes.values():
            node.stop(kill=kill)

    def node_named(self, server_name: str) -> ClusterNode:
        return next(node for node in self.nodes.values() if node.name == server_name)

    def stream_states(self) -> dict[str, dict[str, tuple[int, int]]]:
        """Each running node's copy of each stream."""
        return {node.name: node.stream_states() for node in self.nodes.values() if node.running}


async def start_one_by_one(pipeline: Pipeline) -> None:
    """Start ``pipeline`` (on a :class:`NatsCluster`) with its components one after the other:
    the relay, until its streams exist, then each service until its durable consumers exist.
    Started together on a fresh cluster, they crash: nats-server 2.15.1 leaves some of several
    concurrent requests to create or update one stream, made while it is being placed, without an
    answer, and :func:`shared.events.broker.ensure_streams` / ``ensure_given_up`` do not ask again
    after nats' TimeoutError (a supervisor's restart then gets through)."""
    from shared.events.subjects import EVENTS_STREAM, INBOUND_STREAMS
    from tests.support.pipeline import COMPONENTS, CONSUMERS

    pipeline.nats.start()
    await pipeline.connect()
    for name in COMPONENTS:
        for instance in range(1, pipeline.instances + 1):
            pipeline.start_component(name, instance)
        if name == "relay":
            deadline = time.monotonic() + 60
            for stream in [*INBOUND_STREAMS.values(), EVENTS_STREAM]:
                while True:
                    try:
                        await pipeline.js.stream_info(stream)
                        break
                    except Exception:  # noqa: BLE001 - not made yet
                        pipeline.check_alive()
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"the relay made no {stream}\n{pipeline.tail_logs()}") from None
                        await asyncio.sleep(0.1)
        else:
            await pipeline.wait_ready_for(tuple(d for _, d in CONSUMERS if d.split("-")[0] == name))


async def leader_of(js: Any, stream: str) -> str:
    """The server name of ``stream``'s leader ($JS.API.STREAM.INFO's cluster.leader)."""
    info = await js.stream_info(stream)
    assert info.cluster is not None and info.cluster.leader, f"{stream} has no leader: {info.cluster}"
    return str(info.cluster.leader)


async def wait_replicas_current(js: Any, streams: list[str], timeout: float = 60) -> None:
    """Until each stream has a leader and two current replicas with no lag."""
    deadline = time.monotonic() + timeout
    while True:
        behind = []
        for stream in streams:
            try:
                cluster = (await js.stream_info(stream)).cluster
            except Exception as exc:  # noqa: BLE001 - no leader for a moment
                behind.append(f"{stream}: {type(exc).__name__}")
                continue
            replicas = (cluster.replicas or []) if cluster is not None else []
            if cluster is None or not cluster.leader or len(replicas) != 2 \
                    or not all(r.current and not r.lag for r in replicas):
                behind.append(f"{stream}: {cluster}")
        if not behind:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"replicas not current within {timeout}s: {behind}")
        await asyncio.sleep(0.25)


# -- the sync_interval measurement ---------------------------------------------------------------
async def publish_throughput(cluster: NatsCluster, messages: int, in_flight: int) -> float:
    """Messages a second published (and acknowledged) into a stream of guanhuai's configuration
    with three replicas; ``in_flight`` publishes awaited at once (1: a producer that waits for
    each acknowledgement, as the county's systems and the load generator do). Each message is a
    household registration as the county sends it."""
    from shared.events.broker import stream_configs
    from shared.events.subjects import inbound_subject
    from tests.support.programme import households

    nc = await nats.connect(cluster.url.replace("nats://", "nats://operator:pw-operator@").split(","),
                            inbox_prefix="_INBOX_operator")
    county = await nats.connect(cluster.url.replace("nats://", "nats://county:pw-county@").split(","),
                                inbox_prefix="_INBOX_county")
    try:
        js = nc.jetstream(timeout=30)
        config = stream_configs(replicas=3)[0]
        await js.add_stream(config)
        bodies = [(inbound_subject("county", m.event_type), m.model_dump_json().encode(), str(m.event_id))
                  for m in households(messages, year=2024, seed=7)]
        producer = county.jetstream(timeout=30)
        started = time.perf_counter()
        for start in range(0, len(bodies), in_flight):
            await asyncio.gather(*(producer.publish(s, b, headers={"Nats-Msg-Id": i})
                                   for s, b, i in bodies[start : start + in_flight]))
        elapsed = time.perf_counter() - started
        stored = (await js.stream_info(str(config.name))).state.messages
        assert stored == messages, f"{stored} stored of {messages}"
        return messages / elapsed
    finally:
        await county.close()
        await nc.close()


async def pipeline_throughput(workdir: Path, sync_interval: str | None, count: int, in_flight: int = 100) -> float:
    """Households a second through the pipeline on the cluster (R3, the log on SQLite in
    ``workdir``): from the first publish until enrollment has acknowledged every household and the
    relay has put the registration and its outcome of each on the recorded-events stream."""
    from shared.events.subjects import EVENTS_STREAM, inbound_stream, inbound_subject
    from tests.support.programme import households

    cluster = NatsCluster(workdir / "nats", sync_interval=sync_interval)
    pipeline = Pipeline(workdir, f"sqlite:///{workdir / 'log.db'}", secured=True, nats=cluster)
    pipeline.extra_env["GUANHUAI_NATS_REPLICAS"] = "3"
    try:
        await start_one_by_one(pipeline)
        bodies = [(inbound_subject("county", m.event_type), m.model_dump_json().encode(), str(m.event_id))
                  for m in households(count, year=2024, seed=11)]
        producer = pipeline.producer(bodies[0][0])
        started = time.perf_counter()
        for start in range(0, len(bodies), in_flight):
            await asyncio.gather(*(producer.publish(s, b, headers={"Nats-Msg-Id": i})
                                   for s, b, i in bodies[start : start + in_flight]))
        while True:
            handled = (await pipeline.js.consumer_info(inbound_stream("county"), "enrollment-county-v1")).ack_floor
            relayed = (await pipeline.js.stream_info(EVENTS_STREAM)).state.messages
            if handled.stream_seq >= count and relayed >= 2 * count:
                return count / (time.perf_counter() - started)
            pipeline.check_alive()
            await asyncio.sleep(0.1)
    finally:
        await pipeline.stop()


def _measure(interval: str, directory: Path | None, pipeline_households: int, messages: int, in_flight: int) -> float:
    sync_interval = None if interval == "shipped" else interval
    with tempfile.TemporaryDirectory(dir=directory) as workdir:
        if pipeline_households:
            return asyncio.run(pipeline_throughput(Path(workdir), sync_interval, pipeline_households))
        cluster = NatsCluster(Path(workdir), sync_interval=sync_interval)
        try:
            cluster.start()
            return asyncio.run(publish_throughput(cluster, messages, in_flight))
        finally:
            cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sync-interval", action="append", default=None,
                        help="a sync_interval to measure (repeat): a duration, 'always', 'shipped' (the shipped "
                             "files' value) or 'default' (the line taken out: nats-server's default, 2 minutes). "
                             "Default: default, shipped, always")
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, action="append", default=None)
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each measures every setting once, in turn")
    parser.add_argument("--dir", type=Path, default=None, help="where the stores go (a real disk, not tmpfs)")
    parser.add_argument("--pipeline", type=int, default=0, metavar="HOUSEHOLDS",
                        help="measure households/s through the pipeline on the cluster instead (100 in flight)")
    args = parser.parse_args()
    settings = [(interval, in_flight) for interval in args.sync_interval or ["default", "shipped", "always"]
                for in_flight in ([100] if args.pipeline else args.in_flight or [1, 100])]
    rates: dict[tuple[str, int], list[float]] = {setting: [] for setting in settings}
    for _ in range(args.rounds):  # interleaved: a change in the machine's load falls on every setting alike
        for interval, in_flight in settings:
            rates[(interval, in_flight)].append(_measure(interval, args.dir, args.pipeline, args.messages, in_flight))
    unit = "households/s through the pipeline (log on SQLite)" if args.pipeline else "msg/s published"
    size = f"{args.pipeline} households" if args.pipeline else f"{args.messages} messages"
    for (interval, in_flight), found in rates.items():
        found.sort()
        print(f"sync_interval {interval:>7}  in flight {in_flight:>4}: {found[len(found) // 2]:8.0f} {unit}, R3 "
              f"(median of {len(found)}: {', '.join(f'{r:.0f}' for r in found)}; {size})", flush=True)


if __name__ == "__main__":
    main()
