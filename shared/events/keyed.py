"""Look-ups in a service's own tables keyed by (programme year, key).

A row-value list such as ``(year, id) IN ((2023, 'a'), (2023, 'b'))`` makes SQLite scan the whole
primary-key index for every query, so each batch would cost more as the table grows. Asking per
year, ``year = ? AND id IN (...)``, is answered from the (year, key) primary key on SQLite and
PostgreSQL alike."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Column, select
from sqlalchemy.ext.asyncio import AsyncConnection

CHUNK = 500  # keys per query: well under every driver's limit on bound parameters


async def rows_by_year(
    conn: AsyncConnection, year: Column[Any], key: Column[Any], keys: Iterable[tuple[int, str]], *more: Column[Any]
) -> list[Any]:
    """The rows (``year``, ``key``, ``*more``) whose (year, key) is one of ``keys``."""
    by_year: dict[int, set[str]] = defaultdict(set)
    for y, k in keys:
        by_year[y].add(k)
    found: list[Any] = []
    for y, wanted in sorted(by_year.items()):
        ordered = sorted(wanted)
        for start in range(0, len(ordered), CHUNK):
            query = select(year, key, *more).where(year == y, key.in_(ordered[start : start + CHUNK]))
            found.extend(await conn.execute(query))
    return found
