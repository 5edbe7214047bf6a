"""Look-ups in a service's own tables keyed by (programme year, key).

A row-value list such as ``(year, id) IN ((2023, 'a'), (2023, 'b'))`` makes SQLite scan the whole
primary-key index for every query, so each batch would cost more as the table grows. Asking per
year, ``year = ? AND id IN (...)``, is answered from the (year, key) primary key on SQLite and
PostgreSQL alike.

On SQLite these queries (and the inbox's "which of these inputs are handled") go to the driver as
SQL text made once per table, columns and number of keys, rounded up to a few sizes (the extra
places repeat a key), instead of through SQLAlchemy's expanding ``IN``, which compiles the list's
parameters again on every call: about 15 µs per household of a service's batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Column, select
from sqlalchemy import Connection

CHUNK = 500  # keys per query: well under every driver's limit on bound parameters


def rows_by_year(
    conn: Connection, year: Column[Any], key: Column[Any], keys: Iterable[tuple[int, str]], *more: Column[Any]
) -> list[Any]:
    """The rows (``year``, ``key``, ``*more``) whose (year, key) is one of ``keys``."""
    by_year: dict[int, set[str]] = defaultdict(set)
    for y, k in keys:
        by_year[y].add(k)
    found: list[Any] = []
    for y, wanted in sorted(by_year.items()):
        ordered = sorted(wanted)
        for start in range(0, len(ordered), CHUNK):
            found.extend(select_where_in(conn, (year, key, *more), year, y, key, ordered[start : start + CHUNK]))
    return found


_SIZES = (8, 32, 128, CHUNK)
# (table, selected columns, compared column, listed column, size) by name -> the SQL, or None where
# SQLAlchemy's own path is needed (as ``bulk._prepared`` keys its INSERTs by table and column names).
_statements: dict[tuple[Any, ...], str | None] = {}


def select_where_in(conn: Connection, columns: Sequence[Column[Any]], equal: Column[Any], value: Any,
                          member: Column[Any], keys: Sequence[Any]) -> list[Any]:
    """The rows (``columns``) of ``member``'s table where ``equal == value`` and ``member`` is one
    of ``keys``."""
    if not keys:
        return []
    columns = tuple(columns)
    size = next((n for n in _SIZES if len(keys) <= n), None)
    sql = None
    if conn.dialect.name == "sqlite" and size is not None and value is not None:
        sql = _sqlite_statement(conn, columns, equal, member, size)
    if sql is None:
        return list(conn.execute(select(*columns).where(equal == value, member.in_(list(keys)))))
    padded = [*keys, *[keys[0]] * (size - len(keys))]  # type: ignore[operator]
    return list(conn.exec_driver_sql(sql, (value, *padded)))


def _sqlite_statement(conn: Connection, columns: tuple[Column[Any], ...], equal: Column[Any],
                      member: Column[Any], size: int) -> str | None:
    table = member.table
    key = (table.name, tuple((c.table.name, c.name) for c in columns), equal.table.name, equal.name, member.name, size)
    if key in _statements:
        return _statements[key]
    dialect = conn.dialect

    def converted(column: Column[Any], out: bool) -> bool:
        impl = column.type.dialect_impl(dialect)
        return (impl.result_processor(dialect, None) if out else impl.bind_processor(dialect)) is not None

    sql: str | None = None
    # Values SQLAlchemy converts on the way in (the compared columns) or out (the selected ones)
    # keep its own path, as do columns of other tables.
    if all(c.table is table for c in (*columns, equal)) and not any(converted(c, True) for c in columns) \
            and not converted(equal, False) and not converted(member, False):
        quote = dialect.identifier_preparer.quote
        sql = (f"SELECT {', '.join(quote(c.name) for c in columns)} FROM {dialect.identifier_preparer.format_table(table)} "
               f"WHERE {quote(equal.name)} = ? AND {quote(member.name)} IN ({', '.join('?' * size)})")
    _statements[key] = sql
    return sql
