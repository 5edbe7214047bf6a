"""What the database alone costs the pipeline: the rows a ``bench pipeline`` run wrote, inserted
again with plain ``sqlite3`` into an empty copy of the schema.

Same tables, indexes and triggers, page size, WAL and ``synchronous=FULL``, one transaction per
batch of the services' largest size (enrollment's and subsidy's batches alternate; their own
batches are often smaller, which costs more per row, so this is a floor). Nothing is looked up,
parsed, decided, hashed or published: this is the least any implementation on this schema and
this database would spend, per household, to store what the pipeline stores.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from guanhuai.bench.reference import plain_database
from shared.events.broker import BATCH_SIZE

# The tables the pipeline writes for each household: the log, the inboxes, and each service's own.
TABLES = ("events", "processed_messages", "enrollment_households", "enrollment_persons", "subsidy_persons")


def sqlite_insert_floor(source: Path, workdir: Path, households: int, batch_households: int = BATCH_SIZE) -> dict[str, float]:
    """CPU and wall microseconds per household of re-inserting ``source``'s pipeline rows."""
    with sqlite3.connect(source) as src:
        ddl = [r[0] for r in src.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
            "ORDER BY type != 'table'")]
        data = {t: src.execute(f"SELECT * FROM {t} ORDER BY rowid").fetchall() for t in TABLES}  # noqa: S608
    target = workdir / "floor.db"
    out = plain_database(target, ddl)
    try:
        statements = {t: f"INSERT INTO {t} VALUES ({','.join('?' * len(rows[0]))})" for t, rows in data.items() if rows}
        parts = 2 * max(1, -(-households // batch_households))  # enrollment's and subsidy's commits
        cpu, wall = time.process_time(), time.perf_counter()
        for part in range(parts):
            out.execute("BEGIN IMMEDIATE")
            for table, sql in statements.items():
                rows = data[table]
                out.executemany(sql, rows[len(rows) * part // parts: len(rows) * (part + 1) // parts])
            out.execute("COMMIT")
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        out.close()
    return {
        "rows": sum(len(rows) for rows in data.values()),
        "cpu_us_per_household": round(cpu * 1e6 / households, 1),
        "wall_us_per_household": round(wall * 1e6 / households, 1),
    }
