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
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from nats.js.api import ConsumerConfig, StorageType, StreamConfig
from sqlalchemy import Engine, String, create_engine, func, literal_column, select

from guanhuai.bench import peer_faststream
from guanhuai.bench.floor import sqlite_insert_floor
from guanhuai.embedded import NatsServer
from guanhuai.perf import cpu_seconds
from guanhuai.simulate import Area, registration_messages
from shared.events import EventMessage
from shared.events.broker import fetch_up_to
from shared.events.relay import PubAcks, publish_acked
from shared.events.store import EventStore
from shared.events.subjects import CONSUMER_READY, EVENTS_STREAM, INBOUND_STREAMS, inbound_subject
from shared.events.subsidy import SubsidyLine, SubsidyPlanPublished
from shared.events.tables import events

TOWNSHIPS = [Area(f"town{i:02d}", f"3504{i:02d}") for i in range(1, 11)]
IN_FLIGHT = 1000
COMPONENTS = ("relay", "enrollment", "subsidy")


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


def _start(name: str, env: dict[str, str], logdir: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "guanhuai", "serve", name], env=env,
                            stdout=(logdir / f"{name}.log").open("wb"), stderr=subprocess.STDOUT)


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
                self.outcomes += conn.execute(select(func.count()).select_from(events).where(
                    events.c.position > self.head, events.c.position <= head,
                    literal_column("+event_type", String).in_(self.OUTCOMES))).scalar_one()
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


async def run(households: int, workdir: Path | None, progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    rng = random.Random(2023)
    regs = list(registration_messages(rng, households, year=2023, townships=TOWNSHIPS, source="bench-county"))
    plan = EventMessage.new(SubsidyPlanPublished(
        plan_id="bench-2023", programme_year=2023, insurer="bench insurer",
        lines=[SubsidyLine(code="special", label="特殊家庭", categories=[regs[0].payload.category.__class__("special_family")],
                           rate_fen=4000, head_cap=10**6, budget_fen=4000 * 10**6)],
    ), source="bench-county")
    items = [(inbound_subject("county", r.event_type), r.model_dump_json().encode(), str(r.event_id)) for r in regs]

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
            env = dict(os.environ, GUANHUAI_DB_URL=db_url, GUANHUAI_NATS_URL=server.url, GUANHUAI_LOG_LEVEL="WARNING",
                       GUANHUAI_LOG_JSON="true")
            store = await EventStore.open(db_url)  # the log's schema, before the services start
            reader = log_reader(base / "log.db")
            procs = [_start(name, env, base) for name in COMPONENTS]
            try:
                nc = await nats.connect(server.url)
                js = nc.jetstream(publish_async_max_pending=IN_FLIGHT * 2)
                await _wait_ready(js, procs)
                await js.publish(inbound_subject("county", "SubsidyPlanPublished"), plan.model_dump_json().encode(),
                                 headers={"Nats-Msg-Id": str(plan.event_id)})
                progress_of = _Progress(reader)
                cpu_at_start = _cpu_now(procs, server)  # where the time goes, from here on
                start = datetime.now(timezone.utc)
                publisher = asyncio.create_task(publish_acked(nc, items, batch_size=IN_FLIGHT))
                while True:
                    for p in procs:
                        if p.poll() is not None:
                            raise RuntimeError(f"a service exited ({p.args}); see its log in {base}")
                    await asyncio.sleep(0.25)
                    outcomes, head = await progress_of.poll()
                    progress("households enrolled", outcomes, households)
                    if outcomes == households and await _caught_up(js, head):
                        break
                stored, already = await publisher
                if (stored, already) != (households, 0):
                    raise RuntimeError(f"the county's households: {stored} stored, {already} duplicates of {households}")
                decisions, last_decision = await _decisions(reader)
                cpu = _cpu_used(cpu_at_start, _cpu_now(procs, server))
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


def _cpu_now(procs: list[subprocess.Popen[bytes]], server: NatsServer) -> dict[str, float | None]:
    readings = {name: cpu_seconds(p.pid) for name, p in zip(COMPONENTS, procs, strict=True)}
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
