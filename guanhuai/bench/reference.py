"""The raw reference that the store and rebuild benchmarks share: a plain sqlite3 scan of the log
with ``json.loads`` of every payload."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable

from guanhuai.perf import peak_rss_mb, reset_peak_rss


def plain_scan(conn: sqlite3.Connection, total: int, progress: Callable[[str, int, int], None],
               label: str) -> tuple[int, float, float]:
    """Rows scanned, seconds taken and peak RSS (MB) of ``SELECT *`` in position order + json.loads."""
    reset_peak_rss()
    start = time.perf_counter()
    scanned = 0
    for row in conn.execute("SELECT * FROM events ORDER BY position"):
        json.loads(row[11])
        scanned += 1
        if scanned % 20000 == 0:
            progress(label, scanned, total)
    return scanned, time.perf_counter() - start, peak_rss_mb()
