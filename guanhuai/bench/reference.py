"""The raw reference that the store and rebuild benchmarks share: a plain sqlite3 scan of the log
with ``json.loads`` of every payload."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from guanhuai.perf import peak_rss_mb, reset_peak_rss
from shared.events.database import SQLITE_PAGE_BYTES


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


def plain_database(path: Path, ddl: list[str]) -> sqlite3.Connection:
    """An empty plain sqlite3 database of the given schema, set up as the log is (its page size,
    WAL, durable on power loss), in autocommit mode: the raw side's own transactions are explicit."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA page_size={SQLITE_PAGE_BYTES:d}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    for statement in ddl:
        conn.execute(statement)
    return conn
