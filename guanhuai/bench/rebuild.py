"""``guanhuai bench rebuild``: rebuild the township/year read model from a log of N events, and
in the same run scan the same log with plain sqlite3 and ``json.loads``."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guanhuai.bench.reference import plain_scan
from guanhuai.bench.store import batches
from guanhuai.perf import bulk_gc, peak_rss_mb, reset_peak_rss
from services.reporting.storage import rebuild
from shared.events.store import EventStore


async def write_log(db: Path, total: int) -> None:
    store = await EventStore.open(f"sqlite+aiosqlite:///{db}")
    for batch in batches(total, 2000):
        await store.append_streams(batch)
    await store.close()


def _write_log_process(db: str, total: int) -> None:
    asyncio.run(write_log(Path(db), total))


async def run(total: int, workdir: Path | None, progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        db = Path(tmp) / "log.db"
        # The log is written by a child process, so that the memory measured below is the
        # rebuild's own and not what generating a million events left behind.
        writer = multiprocessing.get_context("spawn").Process(target=_write_log_process, args=(str(db), total))
        writer.start()
        while writer.is_alive():
            await asyncio.sleep(1)
            progress("writing the log (child process)", _count(db), total)
        if writer.exitcode != 0:
            raise RuntimeError(f"writing the log failed with exit code {writer.exitcode}")
        progress("writing the log (child process)", total, total)
        store = await EventStore.open(f"sqlite+aiosqlite:///{db}")

        reset_peak_rss()
        with bulk_gc():
            start = time.perf_counter()
            state = await rebuild(store, on_progress=lambda n: progress("rebuild (guanhuai)", n, total))
            rebuild_s = time.perf_counter() - start
        rebuild_peak = peak_rss_mb()
        rows = len(state.townships)
        await store.close()

        conn = sqlite3.connect(db)
        scanned, plain_s, plain_peak = plain_scan(conn, total, progress, "scan (plain sqlite3 + json.loads)")
        conn.close()
    rate, plain = total / rebuild_s, scanned / plain_s
    if scanned != total:
        raise RuntimeError(f"the log holds {scanned} events, expected {total}")
    return {
        "benchmark": "rebuild",
        "events": total,
        "township_year_rows": rows,
        "rebuild_events_per_s": round(rate),
        "plain_sqlite_scan_per_s": round(plain),
        "ratio": round(rate / plain, 3),
        "rebuild_peak_rss_mb": round(rebuild_peak, 1),
        "plain_scan_peak_rss_mb": round(plain_peak, 1),
        "targets": {"ratio": 0.5, "rebuild_peak_rss_mb": 200},
    }


def _count(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT coalesce(max(position), 0) FROM events").fetchone()[0])
    except sqlite3.Error:
        return 0
