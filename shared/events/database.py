"""Engines for the event log: an SQLite file by default, PostgreSQL by URL.

PostgreSQL URLs may carry libpq's ``sslmode``, ``sslrootcert``, ``sslcert`` and ``sslkey`` in their
query; they become asyncpg's ``ssl`` argument (:func:`shared.events.tls.pg_ssl_connect_args`).

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed event survives power loss), a
busy timeout, and transactions that the code begins itself: writers ``BEGIN IMMEDIATE`` so that
concurrent appenders queue instead of failing half-way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import sqlite_trips
from .tls import pg_ssl_connect_args

WRITE = "guanhuai_write"  # execution option: this connection's transactions will write
# SQLite's page cache per connection of a running service (the relay and the consumers), against
# SQLite's default of 2 MiB: a service inserts into indexes keyed by random ids (event ids, ID
# numbers, households), and once those indexes outgrow the cache, every batch reads most of their
# leaf pages back from the file; a batch's write transaction alone touches thousands of pages.
# (In WAL mode a connection's cache is emptied whenever another connection has committed, so
# what it saves is mostly within one transaction.) In A/B runs of the services on a backlog of
# 20,000 households, enrollment and subsidy spent about 6 % less CPU per household with this
# cache (the runs vary by about ±10 %). The cache only grows as pages are read; a service uses
# two or three connections at a time.
SERVICE_SQLITE_CACHE_KIB = 64 * 1024
# The page size of a new SQLite log, against SQLite's 4 KiB. A batch's rows land all over the
# indexes keyed by random ids, and each commit writes every page it dirtied to the WAL (and a
# checkpoint copies it back): with larger pages the same rows dirty fewer of them, each for more
# of the batch's rows, and the trees are shallower. In interleaved `bench pipeline` runs (20,000
# households, batches of 2,000) 16 KiB pages took 3-5 % less CPU per household than 4 KiB; 32 KiB
# gained nothing more. A log created with another page size keeps it (SQLite fixes the page size
# when a database is created; in WAL mode it cannot change).
SQLITE_PAGE_BYTES = 16 * 1024
# How long the WAL of a service's connections grows before the connection that commits copies it
# back into the database file (a checkpoint), in pages, against SQLite's 1,000. A batch dirties
# thousands of pages (its rows land all over the indexes keyed by random ids), so with 1,000 every
# commit was followed by a checkpoint that copied them all and synced the file; with about 40 MB
# of WAL a checkpoint comes every few batches and copies each page the batches between touched
# once. Re-inserting a pipeline run's rows batch by batch (the bench's plain-sqlite3 floor, on
# this machine, 4 KiB pages and 10,000 of them): 196 -> 178 µs of CPU and 371 -> 270 µs of wall
# time per household. Readers are not held up: SQLite looks a page up in the WAL's hash index.
# In bytes: each connection turns it into pages of its file's own page size (a log made with
# 4 KiB pages checkpoints every 10,240 of them, as before 16 KiB pages).
SERVICE_SQLITE_CHECKPOINT_BYTES = 40 * 1024 * 1024


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``sqlite://`` URLs and pick the async drivers."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, echo: bool = False, sqlite_cache_kib: int | None = None,
                  sqlite_checkpoint_bytes: int | None = None) -> AsyncEngine:
    """``sqlite_cache_kib``: SQLite's page cache per connection; ``sqlite_checkpoint_bytes``: the
    WAL's length past which a commit is followed by a checkpoint, in bytes, counted in whole pages
    of the file's page size, at least one (None: SQLite's defaults, 1,000 pages)."""
    for name, value in (("sqlite_cache_kib", sqlite_cache_kib), ("sqlite_checkpoint_bytes", sqlite_checkpoint_bytes)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"{name} is a positive whole number, not {value!r}")
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        sqlite_trips.install()  # one trip to aiosqlite's thread per statement (see sqlite_trips)
        engine = create_async_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine, sqlite_cache_kib, sqlite_checkpoint_bytes)
        return engine
    parsed, connect_args = pg_ssl_connect_args(parsed)
    return create_async_engine(parsed, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True,
                               connect_args=connect_args)


def _configure_sqlite(engine: AsyncEngine, cache_kib: int | None = None, checkpoint_bytes: int | None = None) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see below)
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_BYTES:d}")  # a new database only; before WAL fixes it
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        if cache_kib is not None:
            cursor.execute(f"PRAGMA cache_size=-{cache_kib:d}")  # negative: in KiB
        if checkpoint_bytes is not None:
            cursor.execute("PRAGMA page_size")
            page_bytes = cursor.fetchone()[0]
            cursor.execute(f"PRAGMA wal_autocheckpoint={max(1, checkpoint_bytes // page_bytes):d}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


@asynccontextmanager
async def write_connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A connection whose transactions take the write lock up front (on SQLite); not yet begun."""
    async with engine.connect() as conn:
        yield await conn.execution_options(**{WRITE: True})
