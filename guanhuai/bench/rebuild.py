"""``guanhuai bench rebuild``: rebuild the township/year read model from a log of N events, and
in the same run scan the same log with plain sqlite3 and ``json.loads``."""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from guanhuai.bench.store import batches
from guanhuai.perf import bulk_gc, peak_rss_mb, reset_peak_rss
from services.reporting.storage import rebuild
from shared.events.store import EventStore


async def run(total: int, workdir: Path | None, progress: Callable[[str, int, int], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        db = Path(tmp) / "log.db"
        store = await EventStore.open(f"sqlite+aiosqlite:///{db}")
        done = 0
        for batch in batches(total, 2000):
            await store.append_streams(batch)
            done += sum(len(b.events) for b in batch)
            progress("writing the log", done, total)

        reset_peak_rss()
        with bulk_gc():
            start = time.perf_counter()
            state = await rebuild(store, on_progress=lambda n: progress("rebuild (guanhuai)", n, total))
            rebuild_s = time.perf_counter() - start
        rebuild_peak = peak_rss_mb()
        rows = len(state.townships)
        await store.close()

        reset_peak_rss()
        conn = sqlite3.connect(db)
        start = time.perf_counter()
        scanned = 0
        for row in conn.execute("SELECT * FROM events ORDER BY position"):
            json.loads(row[11])
            scanned += 1
            if scanned % 20000 == 0:
                progress("scan (plain sqlite3 + json.loads)", scanned, total)
        plain_s = time.perf_counter() - start
        plain_peak = peak_rss_mb()
        conn.close()
    rate, plain = total / rebuild_s, scanned / plain_s
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
