"""Many rows into one table in one statement, each row a tuple of column values.

The services insert a few rows per input into their own tables (insured persons, handled inputs)
at every batch. Handing SQLAlchemy a list of dicts costs a compiled-statement set-up and a
per-row parameter dict on every call; here the INSERT is compiled once per dialect, table and
columns, each column's own bind processing is applied (so a value is stored exactly as
``insert(table)`` would store it), and the rows go to the driver's ``executemany`` as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, bindparam, insert
from sqlalchemy.ext.asyncio import AsyncConnection

_Prepared = tuple[str, list[Callable[[Any], Any] | None]] | None
_prepared: dict[tuple[str, str, tuple[str, ...]], _Prepared] = {}


def _prepare(conn: AsyncConnection, table: Table, columns: tuple[str, ...]) -> _Prepared:
    key = (conn.dialect.name, table.name, columns)
    if key not in _prepared:
        compiled = table.insert().values({c: bindparam(c) for c in columns}).compile(dialect=conn.dialect)
        if list(compiled.positiontup or ()) != list(columns):  # a driver with named parameters
            _prepared[key] = None
        else:
            processors = [table.c[c].type.bind_processor(conn.dialect) for c in columns]
            _prepared[key] = (str(compiled), processors)
    return _prepared[key]


async def insert_rows(conn: AsyncConnection, table: Table, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (tuples in the order of ``columns``) into ``table``."""
    if not rows:
        return
    columns = tuple(columns)
    prepared = _prepare(conn, table, columns)
    if prepared is None:
        await conn.execute(insert(table), [dict(zip(columns, row, strict=True)) for row in rows])
        return
    sql, processors = prepared
    if any(processors):
        rows = [tuple(value if p is None else p(value) for p, value in zip(processors, row, strict=True)) for row in rows]
    await conn.exec_driver_sql(sql, list(rows))
