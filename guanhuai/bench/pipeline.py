"""``guanhuai bench pipeline``: households through enrollment and subsidy, end to end, against the
raw round trip of the same number of messages with plain nats-py.

Our side: an own nats-server (file storage), SQLite, the relay, enrollment and subsidy as their
own processes. A subsidy plan is published, then N households, as ``guanhuai publish`` sends them
(:func:`shared.events.relay.publish_acked`: a thousand written at once, each acknowledged); the
clock runs from the first household published to the last subsidy decision recorded in the log.
Raw side, same server: N messages of the same size published to a JetStream stream with acks (as
many in flight as our publisher), pulled by a durable consumer in batches of 1000 and acked each.
Peer, same server and households: the plain FastStream service a team would write first
(:mod:`guanhuai.bench.peer_faststream`), households/s from the first published to the last outcome.

On PostgreSQL (:func:`compare_postgresql`, ``bench pipeline --db-url postgresql://…``): the same
households through the same components, each run on a fresh nats-server, once on SQLite (one
instance of each component, the county-on-one-machine deployment) and once on a database the bench
creates on the given server and drops afterwards, with ``instances`` of each service and ``relays``
relays. Both runs log at INFO, so that every batch's ``batch_done`` line (decide, write-lock wait,
write and commit times: :func:`shared.events.consumer.commit`) can be summed into where the time
goes, and how long the log's write lock was held (:func:`lock_figures`).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerConfig, StorageType, StreamConfig
from sqlalchemy import Engine, String, create_engine, func, literal_column, select
from sqlalchemy.engine import make_url

from guanhuai.bench import peer_faststream
from guanhuai.bench.floor import sqlite_insert_floor
from guanhuai.embedded import NatsServer
from guanhuai.perf import cpu_seconds
from guanhuai.simulate import Area, registration_messages
from shared.events import EventMessage
from shared.events.broker import fetch_up_to
from shared.events.database import normalise_url
from shared.events.relay import PubAcks, publish_acked
from shared.events.store import EventStore
from shared.events.subjects import CONSUMER_READY, EVENTS_STREAM, INBOUND_STREAMS, inbound_subject
from shared.events.subsidy import SubsidyLine, SubsidyPlanPublished
from shared.events.tables import events

TOWNSHIPS = [Area(f"town{i:02d}", f"3504{i:02d}") for i in range(1, 11)]
IN_FLIGHT = 1000
COMPONENTS = ("relay", "enrollment", "subsidy")
# A service's batch_done line: what its batch spent deciding (before the log's write lock), waiting
# for the lock, writing under it and committing (the lock is released by the commit).
TIMINGS = ("decide_ms", "lock_wait_ms", "write_ms", "commit_ms")


async def _publish_all(js: Any, items: list[tuple[str, bytes, str]], progress: Callable[[int], None] | None = None) -> None:
    pending: list[Any] = []
    for n, (subject, body, msg_id) in enumerate(items, start=1):
        pending.append(await js.publish_async(subject, body, headers={"Nats-Msg-Id": msg_id}))
        if len(pending) >= IN_FLIGHT:
            await asyncio.gather(*pending)
            pending.clear()
            if progress:
                progress(n)
    await asyncio.gather(*pending)


async def _pull_all(sub: Any, count: int, fetch: Callable[..., Awaitable[list[Any]]] | None = None) -> None:
    """Pull ``count`` messages in batches of 1000 (with nats-py's ``fetch``, or ``fetch(sub, n,
    timeout)``), acking each."""
    received = 0
    while received < count:
        try:
            msgs = await (sub.fetch(1000, timeout=1) if fetch is None else fetch(sub, 1000, 1.0))
        except (nats.errors.TimeoutError, asyncio.TimeoutError):
            continue
        for m in msgs:
            await m.ack()
        received += len(msgs)


async def raw_round_trip(url: str, bodies: list[bytes], run: int = 0) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=IN_FLIGHT * 2)
    stream, prefix = f"RAW{run}", f"raw{run}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"], storage=StorageType.FILE))
    await js.add_consumer(stream, ConsumerConfig(durable_name="raw", ack_wait=30, max_ack_pending=20_000))
    sub = await js.pull_subscribe(f"{prefix}.>", durable="raw", stream=stream)

    start = time.perf_counter()
    consumer = asyncio.create_task(_pull_all(sub, len(bodies)))
    await _publish_all(js, [(f"{prefix}.msg", b, f"raw-{i}") for i, b in enumerate(bodies)])
    await consumer
    elapsed = time.perf_counter() - start
    await nc.close()
    return len(bodies) / elapsed


async def raw_costs(url: str, bodies: list[bytes], server_pid: int | None) -> dict[str, Any]:
    """CPU microseconds per message of the raw round trip's two halves, one after the other, for this
    process and for nats-server: publish with acks (all of them, as many in flight as our
    publisher), then pull and ack (all of them). Twice: with plain nats-py (``publish_async`` and
    ``fetch``, as the raw reference does), and with the services' own ways (the relay's
    :class:`PubAcks` in batches of 1,000, and :func:`shared.events.broker.fetch_up_to`)."""

    def now() -> tuple[float, float]:
        return time.process_time(), (cpu_seconds(server_pid) or 0.0) if server_pid else 0.0

    nc = await nats.connect(url)
    js = nc.jetstream(publish_async_max_pending=IN_FLIGHT * 2)
    costs: dict[str, Any] = {}
    for way in ("nats_py", "ours"):
        stream = f"RAWCOST{way.upper().replace('_', '')}"
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream.lower()}.>"], storage=StorageType.FILE))
        await js.add_consumer(stream, ConsumerConfig(durable_name="raw", ack_wait=30, max_ack_pending=len(bodies) + 1000))
        sub = await js.pull_subscribe(f"{stream.lower()}.>", durable="raw", stream=stream)
        items = [(f"{stream.lower()}.msg", b, f"{stream}-{i}") for i, b in enumerate(bodies)]
        start = now()
        if way == "nats_py":
            await _publish_all(js, items)
        else:
            acks = PubAcks(nc)
            for first in range(0, len(items), 1000):
                await acks.publish(items[first:first + 1000])
        published = now()
        await _pull_all(sub, len(bodies), fetch_up_to if way == "ours" else None)
        await nc.flush()  # the last acks are on their way before the clock stops
        done = now()
        per = 1e6 / len(bodies)
        costs[way] = {
            "publish_client_us": round((published[0] - start[0]) * per, 1),
            "publish_server_us": round((published[1] - start[1]) * per, 1),
            "pull_ack_client_us": round((done[0] - published[0]) * per, 1),
            "pull_ack_server_us": round((done[1] - published[1]) * per, 1),
        }
    await nc.close()
    return costs


def nats_floor(costs: dict[str, Any], publishes: int, deliveries: int, households: int) -> dict[str, Any]:
    """What a household's messages alone cost at each way's CPU per message (``raw_costs``), before
    anything is stored, parsed or decided. ``publishes``: messages put on JetStream (the inbound
    ones and every relayed event); ``deliveries``: messages pulled and acked by the services."""

    def per_household(way: dict[str, float]) -> float:
        publish_us = way["publish_client_us"] + way["publish_server_us"]
        pull_us = way["pull_ack_client_us"] + way["pull_ack_server_us"]
        return round((publishes * publish_us + deliveries * pull_us) / households / 1000, 3)

    return {
        "publishes_per_household": round(publishes / households, 2),
        "deliveries_per_household": round(deliveries / households, 2),
        "per_message": costs,
        "cpu_ms_per_household": {way: per_household(c) for way, c in costs.items()},
    }


def _start(name: str, env: dict[str, str], logdir: Path, label: str | None = None) -> subprocess.Popen[bytes]:
    """Component ``name`` as its own process, its output in ``<label>.log`` (``label``: the name)."""
    return subprocess.Popen([sys.executable, "-m", "guanhuai", "serve", name], env=env,
                            stdout=(logdir / f"{label or name}.log").open("wb"), stderr=subprocess.STDOUT)


class _Progress:
    """Households with an outcome so far, and the head of the log, counted as the log grows: each
    poll counts only the rows added since the last one (a range of the primary key), so that the
    bench's own polling, which shares the cores with the pipeline, costs the same at the end of a
    run as at its start (a count over the whole log by event type did not). Read through the
    bench's own engine on the log's file (``log_reader``), in a worker thread."""

    OUTCOMES = ("PolicyIssued", "HouseholdRejected")

    def __init__(self, engine: Engine) -> None:
        self.engine, self.outcomes, self.head = engine, 0, 0

    def _poll(self) -> tuple[int, int]:
        with self.engine.connect() as conn:
            head = conn.execute(select(func.coalesce(func.max(events.c.position), 0))).scalar_one()
            if head > self.head:
                # SQLite: ``+event_type`` keeps it on the primary key's range (not the type's index);
                # PostgreSQL has no unary plus for text and plans the range by itself.
                event_type = (literal_column("+event_type", String) if self.engine.dialect.name == "sqlite"
                              else events.c.event_type)
                self.outcomes += conn.execute(select(func.count()).select_from(events).where(
                    events.c.position > self.head, events.c.position <= head,
                    event_type.in_(self.OUTCOMES))).scalar_one()
                self.head = head
        return self.outcomes, self.head

    async def poll(self) -> tuple[int, int]:
        return await asyncio.to_thread(self._poll)


def log_reader(db_path: Path) -> Engine:
    """The bench's own read-only view of the log's SQLite file (not the store's engine)."""
    return create_engine(f"sqlite:///{db_path}")


async def _caught_up(js: Any, head: int) -> bool:
    """The relay has published the whole log and subsidy has handled all it was sent."""
    info = await js.stream_info(EVENTS_STREAM)
    consumer = await js.consumer_info(EVENTS_STREAM, "subsidy-v1")
    return info.state.last_seq >= head and consumer.num_pending == 0 and consumer.num_ack_pending == 0


async def _messages_moved(js: Any) -> tuple[int, int]:
    """(messages put on the two streams, messages delivered to the services' consumers) so far."""
    publishes = sum([(await js.stream_info(name)).state.last_seq for name in (*INBOUND_STREAMS.values(), EVENTS_STREAM)])
    deliveries = 0
    for stream, durable in CONSUMER_READY:
        deliveries += (await js.consumer_info(stream, durable)).delivered.consumer_seq
    return publishes, deliveries


async def _decisions(engine: Engine) -> tuple[int, datetime]:
    """How many subsidy decisions, and when the last one was recorded."""
    def count() -> tuple[int, datetime]:
        with engine.connect() as conn:
            query = select(func.count(), func.max(events.c.recorded_at)).where(
                events.c.event_type.in_(["SubsidyApproved", "SubsidyRejected"]))
            number, last = conn.execute(query).one()
        return int(number), last

    return await asyncio.to_thread(count)


def _environment(db_url: str, nats_url: str, log_level: str) -> dict[str, str]:
    """The components' environment: this one's, without metrics ports (two instances of a
    component on one host would ask for the same), and the bench's log, server and log level."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GUANHUAI_METRICS_PORT")}
    env.update(GUANHUAI_DB_URL=db_url, GUANHUAI_NATS_URL=nats_url, GUANHUAI_LOG_LEVEL=log_level, GUANHUAI_LOG_JSON="true")
    return env


async def _through_services(server: NatsServer, db_url: str, reader: Engine, logdir: Path,
                            items: list[tuple[str, bytes, str]], plan: EventMessage,
                            progress: Callable[[str, int, int], None], *, instances: int = 1, relays: int = 1,
                            log_level: str = "WARNING", what: str = "households enrolled") -> dict[str, Any]:
    """The plan, then the households, through the relay(s), enrollment and subsidy (``instances``
    of each service, ``relays`` relays) on ``db_url``; the clock runs from the first household
    published to the last subsidy decision recorded. ``reader``: the bench's own engine on the log
    (disposed here). The processes' logs are left in ``logdir`` (``<component>.log``, or
    ``<component>-<n>.log`` when there are several of a kind)."""
    households = len(items)
    counts = {"relay": relays, "enrollment": instances, "subsidy": instances}
    labels = [(name, name if counts[name] == 1 else f"{name}-{n}") for name in COMPONENTS
              for n in range(1, counts[name] + 1)]
    env = _environment(db_url, server.url, log_level)
    store = await EventStore.open(db_url)  # the log's schema, before the services start
    procs = [_start(name, env, logdir, label) for name, label in labels]
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream(publish_async_max_pending=IN_FLIGHT * 2)
        await _wait_ready(js, procs)
        await js.publish(inbound_subject("county", "SubsidyPlanPublished"), plan.model_dump_json().encode(),
                         headers={"Nats-Msg-Id": str(plan.event_id)})
        progress_of = _Progress(reader)
        names = [label for _, label in labels]
        cpu_at_start = _cpu_now(names, procs, server)  # where the time goes, from here on
        busy_at_start = _machine_busy_s()
        server_at_start = await asyncio.to_thread(_database_server_cpu, reader)
        start = datetime.now(timezone.utc)
        publisher = asyncio.create_task(publish_acked(nc, items, batch_size=IN_FLIGHT))
        while True:
            for p in procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a service exited ({p.args}); see its log in {logdir}")
            await asyncio.sleep(0.25)
            outcomes, head = await progress_of.poll()
            progress(what, outcomes, households)
            if outcomes == households and await _caught_up(js, head):
                break
        stored, already = await publisher
        if (stored, already) != (households, 0):
            raise RuntimeError(f"the county's households: {stored} stored, {already} duplicates of {households}")
        decisions, last_decision = await _decisions(reader)
        cpu = _cpu_used(cpu_at_start, _cpu_now(names, procs, server))
        busy_at_end = _machine_busy_s()
        cpu.update(_server_cpu_used(server_at_start, await asyncio.to_thread(_database_server_cpu, reader)))
        publishes, deliveries = await _messages_moved(js)
        elapsed = (last_decision - start).total_seconds()
        await nc.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        reader.dispose()
        await store.close()
    return {"subsidy_decisions": decisions, "seconds": elapsed, "cpu_s": cpu, "publishes": publishes,
            "deliveries": deliveries, "logs": {label: logdir / f"{label}.log" for _, label in labels},
            # The whole machine's busy CPU over the same span as ``cpu_s``.
            "machine_busy_s": None if busy_at_start is None or busy_at_end is None else busy_at_end - busy_at_start}


def _households(households: int) -> tuple[list[tuple[str, bytes, str]], EventMessage]:
    """The county's households as published (subject, body, message id), and its subsidy plan."""
    rng = random.Random(2023)
    regs = list(registration_messages(rng, households, year=2023, townships=TOWNSHIPS, source="bench-county"))
    plan = EventMessage.new(SubsidyPlanPublished(
        plan_id="bench-2023", programme_year=2023, insurer="bench insurer",
        lines=[SubsidyLine(code="special", label="特殊家庭", categories=[regs[0].payload.category.__class__("special_family")],
                           rate_fen=4000, head_cap=10**6, budget_fen=4000 * 10**6)],
    ), source="bench-county")
    items = [(inbound_subject("county", r.event_type), r.model_dump_json().encode(), str(r.event_id)) for r in regs]
    return items, plan


async def run(households: int, workdir: Path | None, progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    items, plan = _households(households)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        base = Path(tmp)
        with NatsServer(base / "nats") as server:
            bodies = [body for _, body, _ in items]
            # The raw rate varies from run to run on a small machine: take the median of three.
            raw_rates = []
            for run_no in range(3):
                raw_rates.append(await raw_round_trip(server.url, bodies, run_no))
                progress("raw nats-py round trip (3 runs)", run_no + 1, 3)
            raw_rate = sorted(raw_rates)[1]
            costs = await raw_costs(server.url, bodies, server.process.pid if server.process else None)
            progress("raw nats-py costs per message", 1, 1)

            db_url = f"sqlite+aiosqlite:///{base / 'log.db'}"
            through = await _through_services(server, db_url, log_reader(base / "log.db"), base, items, plan, progress)
            decisions, elapsed, cpu = through["subsidy_decisions"], through["seconds"], through["cpu_s"]
            publishes, deliveries = through["publishes"], through["deliveries"]
            progress("plain sqlite3 inserts of the same rows", 0, 1)
            floor = sqlite_insert_floor(base / "log.db", base, households)
            progress("plain sqlite3 inserts of the same rows", 1, 1)
            # The peer a team would write first, on the same server and the same households.
            peer = await peer_faststream.run(server.url, bodies, [msg_id for _, _, msg_id in items], base, progress,
                                             in_flight=IN_FLIGHT)
    rate = households / elapsed
    cores = os.cpu_count() or 1
    return {
        "benchmark": "pipeline",
        "households": households,
        "subsidy_decisions": decisions,
        "seconds": round(elapsed, 2),
        "households_per_s": round(rate, 1),
        "raw_nats_round_trip_per_s": round(raw_rate, 1),
        "raw_runs_per_s": [round(r, 1) for r in raw_rates],
        "ratio": round(rate / raw_rate, 3),
        # The plain FastStream service (guanhuai/bench/peer_faststream.py): one handler call, one
        # SQLAlchemy session and one publish per household; enrollment's decision only.
        "plain_faststream_households_per_s": peer["households_per_s"],
        "faststream_ratio": round(rate / peer["households_per_s"], 3),
        "plain_faststream": peer,
        "targets": {"ratio": 0.3, "faststream_ratio": 3.0},
        "cpu_ms_per_household": {name: round(seconds * 1000 / households, 3) for name, seconds in cpu.items()},
        # What reaching the target allows: every core busy, CPU per household at most this.
        "cpu_ms_per_household_at_target": round(cores * 1000 / (0.3 * raw_rate), 3),
        "cores": cores,
        # The database's share alone: the same rows inserted with plain sqlite3 (guanhuai/bench/floor.py).
        "plain_sqlite_inserts": floor,
        # The messaging's share alone: this run's messages at plain nats-py's and at our own cost per message.
        "nats_floor": nats_floor(costs, publishes, deliveries, households),
    }


def _cpu_now(names: list[str], procs: list[subprocess.Popen[bytes]], server: NatsServer) -> dict[str, float | None]:
    readings = {name: cpu_seconds(p.pid) for name, p in zip(names, procs, strict=True)}
    readings["nats-server"] = cpu_seconds(server.process.pid) if server.process else None
    # This process: the county's publisher (as `guanhuai publish` sends) and the progress polls.
    # Not part of the pipeline, but it shares the cores with it.
    readings["bench (publisher, polls)"] = time.process_time()
    return readings


def _cpu_used(before: dict[str, float | None], after: dict[str, float | None]) -> dict[str, float]:
    return {name: end - start for name, end in after.items()
            if end is not None and (start := before.get(name)) is not None}


async def _wait_ready(js: Any, procs: list[subprocess.Popen[bytes]]) -> None:
    for _ in range(600):
        try:
            for stream, durable in CONSUMER_READY:
                await js.consumer_info(stream, durable)
            return
        except Exception:  # noqa: BLE001 - not created yet
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a service exited during start-up") from None
            await asyncio.sleep(0.1)
    raise TimeoutError("services did not create their consumers")


def peer_line(figures: dict[str, Any]) -> str:
    """What ``bench pipeline`` prints of its peer: households/s of both and the ratio."""
    peer = figures["plain_faststream"]
    return (f"vs plain FastStream service (one handler call, session and publish per household; "
            f"{', '.join(f'{n:,} {k}' for k, n in peer['outcomes'].items())}): guanhuai "
            f"{figures['households_per_s']:,} households/s   plain {peer['households_per_s']:,} households/s   "
            f"ratio {figures['faststream_ratio']:.2f} (target ≥ {figures['targets']['faststream_ratio']:.2f}); "
            f"its CPU ms per household: {peer.get('cpu_ms_per_household')}")


# ---------------------------------------------------------------------------------------------
# PostgreSQL beside SQLite: ``bench pipeline --db-url postgresql://… --instances 2``.


def postgresql_unreachable(url: str) -> str | None:
    """Why the PostgreSQL server of ``url`` cannot be used by the bench (None: it answers)."""
    try:
        parsed = make_url(normalise_url(url))
    except Exception as exc:  # noqa: BLE001 - a URL SQLAlchemy cannot read
        return f"not a database URL ({type(exc).__name__}: {exc})"
    if parsed.get_backend_name() != "postgresql":
        return f"not a PostgreSQL URL ({parsed.get_backend_name()})"
    engine = create_engine(parsed, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"PostgreSQL at {parsed.render_as_string(hide_password=True)} is not reachable ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})"
    finally:
        engine.dispose()
    return None


@contextmanager
def bench_database(url: str) -> Iterator[str]:
    """A database of the bench's own on the server of ``url`` (``guanhuai_bench_<random>``), dropped
    when the block ends; yields its URL. The database ``url`` names is only connected to, to
    create and drop ours: nothing else on the server is touched."""
    admin_url = make_url(normalise_url(url))
    name = f"guanhuai_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            yield admin_url.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def batch_timings(logs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """Per component instance (its log's label): the batches its ``batch_done`` lines report, the
    inputs handled, and the seconds they spent in each step (:data:`TIMINGS`), summed."""
    out: dict[str, dict[str, Any]] = {}
    for label, path in logs.items():
        sums = {key: 0.0 for key in TIMINGS}
        batches = handled = 0
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        for line in lines:
            if '"batch_done"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") != "batch_done" or "commit_ms" not in record:
                continue  # (a batch of dead letters alone carries no timings)
            batches += 1
            handled += int(record.get("handled") or 0)
            for key in TIMINGS:
                sums[key] += float(record.get(key) or 0.0)
        if batches:
            out[label] = {"batches": batches, "inputs_handled": handled,
                          **{key.replace("_ms", "_s"): round(value / 1000, 3) for key, value in sums.items()}}
    return out


def lock_figures(timings: dict[str, dict[str, Any]], households: int, seconds: float) -> dict[str, Any]:
    """The log's write lock (PostgreSQL's advisory lock, SQLite's write transaction) over a run:
    held from a batch's lock to its commit (its write and commit steps), one holder at a time.
    ``held_share``: of the run's wall clock; ``ceiling_households_per_s``: the rate if the lock
    were held for nothing else and back to back (one log's limit at this cost per household)."""
    held = sum(t["write_s"] + t["commit_s"] for t in timings.values())
    waited = sum(t["lock_wait_s"] for t in timings.values())
    return {
        "held_s": round(held, 3),
        "waited_s": round(waited, 3),
        "held_share": round(held / seconds, 3) if seconds else None,
        "held_ms_per_household": round(held * 1000 / households, 4) if households else None,
        "ceiling_households_per_s": round(households / held, 1) if held else None,
    }


POSTGRES_BACKENDS = "postgresql (this database's backends)"
POSTGRES_BACKGROUND = "postgresql (server's background processes)"


def _database_server_cpu(engine: Engine) -> dict[str, dict[int, float]]:
    """PostgreSQL only (on the same machine): CPU seconds so far of the server processes of the
    bench's database (``pg_stat_activity``: the services' backends, and the bench's own reader)
    and of the server's background processes (WAL writer, checkpointer, ...: shared with any
    other database of the server). Empty on SQLite, or when the server is not on this machine."""
    if engine.dialect.name != "postgresql":
        return {}
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT pid, datname IS NOT NULL AND datname = current_database() FROM pg_stat_activity "
            "WHERE datname = current_database() OR (datname IS NULL AND backend_type <> 'client backend')").all()
    found: dict[str, dict[int, float]] = {POSTGRES_BACKENDS: {}, POSTGRES_BACKGROUND: {}}
    for pid, ours in rows:
        seconds = cpu_seconds(int(pid))
        if seconds is not None:
            found[POSTGRES_BACKENDS if ours else POSTGRES_BACKGROUND][int(pid)] = seconds
    return found if any(found.values()) else {}


def _server_cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds each group of server processes spent between two readings (a process that
    started meanwhile counts from its start; one that ended meanwhile is not counted)."""
    return {group: sum(end - before.get(group, {}).get(pid, 0.0) for pid, end in pids.items())
            for group, pids in after.items()}


def _machine_busy_s() -> float | None:
    """CPU seconds the whole machine has been busy so far (all cores; Linux ``/proc/stat``)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    except (OSError, ValueError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def _database_run(base: Path, db_url: str, reader: Engine, items: list[tuple[str, bytes, str]],
                        plan: EventMessage, progress: Callable[[str, int, int], None], *, what: str,
                        instances: int, relays: int) -> dict[str, Any]:
    """One run through the services on a fresh nats-server, logging at INFO (for the batch_done
    lines), with the figures of where the time went."""
    households = len(items)
    base.mkdir(parents=True, exist_ok=True)
    with NatsServer(base / "nats") as server:
        through = await _through_services(server, db_url, reader, base, items, plan, progress, instances=instances,
                                          relays=relays, log_level="INFO", what=what)
    seconds = through["seconds"]
    timings = batch_timings(through["logs"])
    cpu = through["cpu_s"]
    machine_busy = through["machine_busy_s"]
    ours = sum(cpu.values())
    return {
        "instances": instances,
        "relays": relays,
        "subsidy_decisions": through["subsidy_decisions"],
        "seconds": round(seconds, 2),
        "households_per_s": round(households / seconds, 1),
        "cpu_ms_per_household": {name: round(s * 1000 / households, 3) for name, s in cpu.items()},
        # The whole machine's busy CPU over the run, less the processes above (PostgreSQL's among
        # them): whatever else the machine ran meanwhile (the kernel's I/O work, other programs).
        "cpu_ms_per_household_elsewhere": (None if machine_busy is None
                                           else round(max(machine_busy - ours, 0.0) * 1000 / households, 3)),
        "batches": timings,
        "lock": lock_figures(timings, households, seconds),
    }


async def compare_postgresql(households: int, pg_url: str, workdir: Path | None,
                             progress: Callable[[str, int, int], None], *, instances: int = 2,
                             relays: int | None = None) -> dict[str, Any]:
    """The same households through the relay, enrollment and subsidy twice: on SQLite with one
    instance of each (the county-on-one-machine deployment), then on a PostgreSQL database of the
    bench's own on ``pg_url``'s server (created here, dropped afterwards) with ``instances`` of
    each service and ``relays`` relays (default: as many). Each run has a fresh nats-server and
    logs at INFO (both alike), so the figures are comparable with each other, not with
    :func:`run`'s run at WARNING."""
    reason = postgresql_unreachable(pg_url)
    if reason is not None:
        raise RuntimeError(reason)
    relays = instances if relays is None else relays
    items, plan = _households(households)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        base = Path(tmp)
        sqlite_dir = base / "sqlite"
        sqlite_dir.mkdir()
        sqlite = await _database_run(sqlite_dir, f"sqlite:///{sqlite_dir / 'log.db'}", log_reader(sqlite_dir / "log.db"),
                                     items, plan, progress, what="SQLite, 1 instance each: households enrolled",
                                     instances=1, relays=1)
        with bench_database(pg_url) as url:
            postgresql = await _database_run(
                base / "postgresql", url, create_engine(make_url(normalise_url(url))), items, plan, progress,
                what=f"PostgreSQL, {instances} instances: households enrolled", instances=instances, relays=relays)
            settings = _server_settings(url)
    return {
        "benchmark": "pipeline_postgresql",
        "households": households,
        "instances": instances,
        "relays": relays,
        "database": {"server": settings.get("server_version"), "settings": settings,
                     "url": make_url(normalise_url(pg_url)).render_as_string(hide_password=True)},
        "postgresql_households_per_s": postgresql["households_per_s"],
        "sqlite_households_per_s": sqlite["households_per_s"],
        "postgresql_vs_sqlite": round(postgresql["households_per_s"] / sqlite["households_per_s"], 3),
        "targets": {},
        "postgresql": postgresql,
        "sqlite": sqlite,
        "cores": os.cpu_count() or 1,
    }


def _server_settings(url: str) -> dict[str, str | None]:
    """The server's version and the settings a commit's cost depends on (labels only)."""
    engine = create_engine(make_url(normalise_url(url)))
    found: dict[str, str | None] = {}
    try:
        with engine.connect() as conn:
            for name in ("server_version", "synchronous_commit", "fsync", "shared_buffers"):
                found[name] = str(conn.exec_driver_sql(f"SHOW {name}").scalar_one())
    except Exception:  # noqa: BLE001 - only labels
        pass
    finally:
        engine.dispose()
    return found


def postgresql_lines(figures: dict[str, Any]) -> list[str]:
    """What ``bench pipeline --db-url`` prints of :func:`compare_postgresql`'s figures."""
    lines = [f"PostgreSQL {figures['database']['server'] or ''}, {figures['instances']} instances of each service, "
             f"{figures['relays']} relay(s): {figures['postgresql_households_per_s']:,} households/s   "
             f"SQLite, one instance of each, same households: {figures['sqlite_households_per_s']:,} households/s   "
             f"ratio {figures['postgresql_vs_sqlite']:.2f}   (both logging at INFO for the batch timings)"]
    for name in ("postgresql", "sqlite"):
        run_ = figures[name]
        lock = run_["lock"]
        steps = {key: sum(t[key] for t in run_["batches"].values()) for key in ("decide_s", "lock_wait_s", "write_s", "commit_s")}
        lines.append(
            f"  {name}: {run_['seconds']} s; the services' batches spent "
            + ", ".join(f"{key[:-2].replace('_', ' ')} {value:.2f} s" for key, value in steps.items())
            + f"; the log's write lock held {lock['held_s']:.2f} s ({lock['held_share']:.0%} of the run, "
              f"{lock['held_ms_per_household']:.3f} ms per household: at most {lock['ceiling_households_per_s']:,} "
              f"households/s if it were held back to back)")
        lines.append("    CPU ms per household: " + "   ".join(f"{k} {v:.3f}" for k, v in run_["cpu_ms_per_household"].items())
                     + (f"   elsewhere on the machine (anything else running) "
                        f"{run_['cpu_ms_per_household_elsewhere']:.3f}"
                        if run_["cpu_ms_per_household_elsewhere"] is not None else ""))
    return lines
