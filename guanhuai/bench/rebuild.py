"""``guanhuai bench rebuild``: rebuild the township/year read model from a log of N events, and
in the same run scan the same log with plain sqlite3 and ``json.loads``.

The log is generated first, in a child process (so that the memory measured is the rebuild's own),
and timed apart from the rebuild. Generating households one by one (the enrollment decider,
pydantic models) makes about 14,000 events/s here (12 minutes for ten million, before any append).
So a block of :data:`BLOCK` events is generated once and then written again and again under fresh
stream and event ids (the same payloads: the rebuild's work per event is the same, it folds every
event in), about 30,000 events/s, through the log's own append in transactions of
:data:`APPEND_BATCH` events. A log kept with ``log`` is reused by the next run (of that size, or
more: the events that arrived live in an earlier run).

The rebuild is the one ``guanhuai rebuild`` runs: a new version of the read models built beside
the serving one, then switched in (blue/green). With ``live_per_s``, households keep arriving
meanwhile, at that many events a second, and are projected live into the serving version; the
report is read every second; the figures say whether it was ever empty, how many events arrived
during the rebuild, and whether the switched-in version covers them.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from guanhuai.bench.reference import plain_scan
from guanhuai.bench.store import batches, household_streams
from guanhuai.perf import bulk_gc, peak_rss_mb, reset_peak_rss
from services.reporting import storage
from services.reporting.handlers import ReportingHandler
from services.reporting.tables import metadata
from shared.events.base import EventMessage
from shared.events.consumer import Incoming, process_batch
from shared.events.relay import published_body
from shared.events.store import EventStore, StreamAppend
from shared.events.subjects import EVENTS_STREAM, event_subject

BLOCK = 50_000  # events generated household by household, then repeated under fresh ids
APPEND_BATCH = 5000  # events per append transaction while generating


def _fresh(events: list[EventMessage]) -> list[EventMessage]:
    """The same events under new event ids (correlation and causation ids following them)."""
    ids: dict[uuid.UUID, uuid.UUID] = {}
    out = []
    for ev in events:
        new = ids[ev.event_id] = uuid.uuid4()
        out.append(ev.model_copy(update={
            "event_id": new, "correlation_id": ids.get(ev.correlation_id, ev.correlation_id),
            "causation_id": ids.get(ev.causation_id, ev.causation_id) if ev.causation_id else None,
        }))
    return out


def _streams(total: int) -> Iterator[tuple[str, list[EventMessage]]]:
    block = [(item.stream_id, list(item.events)) for batch in batches(min(total, BLOCK), 2000) for item in batch]
    yield from block
    for replica in itertools.count(1):
        for stream_id, events in block:
            yield f"{stream_id}.{replica}", _fresh(events)


def log_batches(total: int, batch_size: int = APPEND_BATCH) -> Iterator[list[StreamAppend]]:
    """The benchmark's log, ``total`` events in appends of about ``batch_size``: up to :data:`BLOCK`
    events the log :func:`guanhuai.bench.store.batches` makes, then the same streams again under
    fresh ids."""
    streams = _streams(total)
    made = 0
    while made < total:
        batch, size = [], 0
        while size < batch_size and made + size < total:
            stream_id, events = next(streams)
            events = events[: total - made - size]
            batch.append(StreamAppend(stream_id, events, 0))
            size += len(events)
        made += size
        yield batch


async def write_log(db: Path, total: int) -> None:
    store = await EventStore.open(f"sqlite:///{db}")
    for batch in log_batches(total):
        await store.append_streams(batch)
    await store.close()


def _write_log_process(db: str, total: int) -> None:
    asyncio.run(write_log(Path(db), total))


async def run(total: int, workdir: Path | None, progress: Callable[[str, int, int], None], *,
              log: Path | None = None, live_per_s: int = 0) -> dict[str, Any]:
    with ExitStack() as stack:
        if log is None:
            db = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=workdir))) / "log.db"
        else:
            db = log
        generate_s = await _generated(db, total, progress)
        store = await EventStore.open(f"sqlite:///{db}")
        try:
            rebuilt = await _rebuild(store, total, progress, live_per_s)
        finally:
            await store.close()

        conn = sqlite3.connect(db)
        scanned, plain_s, plain_peak = plain_scan(conn, total, progress, "scan (plain sqlite3 + json.loads)")
        conn.close()
    logged = rebuilt.pop("logged")
    if scanned != logged:
        raise RuntimeError(f"the log holds {scanned} events, expected {logged}")
    rate, plain = rebuilt.pop("rate"), scanned / plain_s
    return {
        "benchmark": "rebuild",
        "events": total,
        "generate_s": None if generate_s is None else round(generate_s, 1),
        "generate_events_per_s": None if generate_s is None else round(total / generate_s),
        "log_reused": generate_s is None,
        **rebuilt,
        "rebuild_events_per_s": round(rate),
        "plain_sqlite_scan_per_s": round(plain),
        "ratio": round(rate / plain, 3),
        "plain_scan_peak_rss_mb": round(plain_peak, 1),
        "targets": {"ratio": 0.5, "rebuild_peak_rss_mb": 200},
    }


async def _generated(db: Path, total: int, progress: Callable[[str, int, int], None]) -> float | None:
    """Seconds spent writing the log of ``total`` events at ``db``; None when one was there already."""
    if db.exists():
        held = _count(db)
        if held < total:  # (more: the events that arrived live during an earlier run, rebuilt too)
            raise RuntimeError(f"{db} holds a log of {held:,} events, fewer than {total:,}: remove it or name another file")
        progress("log of an earlier run, reused", total, total)
        return None
    # The log is written by a child process, so that the memory measured below is the
    # rebuild's own and not what generating the events left behind.
    start = time.perf_counter()
    writer = multiprocessing.get_context("spawn").Process(target=_write_log_process, args=(str(db), total))
    writer.start()
    while writer.is_alive():
        await asyncio.sleep(1)
        progress("writing the log (child process)", _count(db), total)
    if writer.exitcode != 0:
        raise RuntimeError(f"writing the log failed with exit code {writer.exitcode}")
    progress("writing the log (child process)", total, total)
    return time.perf_counter() - start


async def _rebuild(store: EventStore, total: int, progress: Callable[[str, int, int], None],
                   live_per_s: int) -> dict[str, Any]:
    rss: list[float] = []
    step = max(1, total // 10)  # (the log's positions: the events arriving live are counted in)

    def on_progress(position: int) -> None:
        progress("rebuild (guanhuai, beside the serving version)", position, total)
        if position >= (len(rss) + 1) * step:
            rss.append(_rss_mb())

    live = _Live(store, live_per_s) if live_per_s else None
    first_built = await live.start() if live is not None else False
    events = await store.head_position()
    reset_peak_rss()
    with bulk_gc():
        start = time.perf_counter()
        state = await storage.rebuild(store, on_progress=on_progress)
        rebuild_s = time.perf_counter() - start
    peak = peak_rss_mb()
    figures: dict[str, Any] = {
        "rebuilt_events": events, "rate": events / rebuild_s, "rebuild_s": round(rebuild_s, 2),
        "rebuild_peak_rss_mb": round(peak, 1),
        "rebuild_rss_mb_by_tenth": [round(r, 1) for r in rss], "township_year_rows": len(state.townships),
        "serving_version": await store.read(storage.serving_version),
    }
    if live is not None:
        figures["beside_live"] = {**await live.stop(state.position), "serving_version_built_first": first_built}
    figures["logged"] = await store.head_position()
    return figures


class _Live:
    """Households arriving during the rebuild, projected live as the reporting service would (the
    log's rows handed to its handler as NATS hands them over), and the report read every second."""

    def __init__(self, store: EventStore, per_s: int) -> None:
        self.store, self.per_s = store, per_s
        self.handler = ReportingHandler(store)
        self.streams = household_streams(random.Random(2026), 2023)
        self.run = uuid.uuid4().hex[:8]  # a reused log has the streams of earlier runs
        self.fed = 0
        self.appended = 0
        self.reads: list[int] = []  # township rows of each report read
        self.running = True
        self.tasks: list[asyncio.Task[None]] = []

    async def start(self) -> bool:
        """Start arrivals and reads; True if a serving version had to be built first (a new log)."""
        await self.store.create_schema(metadata)
        served = await self.store.read(storage.load)
        built = served.position == 0
        if built:  # a log just written has no read models yet: the version that serves meanwhile
            served = await storage.rebuild(self.store)
        self.fed = served.position
        self.tasks = [asyncio.ensure_future(self._arrive()), asyncio.ensure_future(self._read())]
        return built

    async def _arrive(self) -> None:
        tick = 0.1
        while self.running:
            await asyncio.sleep(tick)
            batch, size = [], 0
            while size < self.per_s * tick:
                stream_id, events = next(self.streams)
                batch.append(StreamAppend(f"live-{self.run}-{stream_id}", _fresh(events), 0))
                size += len(events)
            await self.store.append_streams(batch)
            self.appended += size
            await self._project()

    async def _project(self) -> None:
        rows = await asyncio.to_thread(self.store.pager(self.fed, batch_size=100_000))
        if not rows:
            return
        messages = [Incoming(subject=event_subject(row[4]), body=published_body(row), headers={"Nats-Msg-Id": row[1]},
                             stream=EVENTS_STREAM, sequence=row[0]) for row in rows]
        result = await process_batch(self.store, self.handler, messages)
        if result.handled != len(rows):
            raise RuntimeError(f"the live projection handled {result.handled} of {len(rows)} events")
        self.fed = rows[-1][0]

    async def _read(self) -> None:
        while self.running:
            state = await self.store.read(storage.load)
            self.reads.append(len(state.townships))
            await asyncio.sleep(1)

    async def stop(self, switched_at: int) -> dict[str, Any]:
        """After the switch: one more second of arrivals (projected into the new version), then stop
        and check the serving version against the log."""
        during = self.appended
        await asyncio.sleep(1)
        self.running = False
        await asyncio.gather(*self.tasks)
        await self._project()
        served = await self.store.read(storage.load)
        head = await self.store.head_position()
        from_log_policies = await self.store.read(lambda conn: conn.exec_driver_sql(
            "SELECT count(*) FROM events WHERE event_type = 'PolicyIssued'").scalar_one())
        return {
            "events_per_s": self.per_s, "events_during_rebuild": during, "events_after_switch": self.appended - during,
            "switched_at_position": switched_at, "reports_read": len(self.reads),
            "reports_empty": sum(1 for n in self.reads if n == 0),
            "serving_checkpoint_is_head": served.position == head,
            "serving_policies_equal_log": sum(r.policies for r in served.townships.values()) == from_log_policies,
        }


def _rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0])
    except sqlite3.Error:
        return 0
