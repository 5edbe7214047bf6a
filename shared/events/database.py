"""Engines for the event log: an SQLite file by default, PostgreSQL by URL.

The engines are synchronous (SQLAlchemy Core on the standard library's ``sqlite3``, and on
``psycopg`` 3 for PostgreSQL): the async services hand a batch's whole transaction to a worker
thread (:meth:`shared.events.store.EventStore.write`), as a plain function.

PostgreSQL URLs may carry libpq's ``sslmode``, ``sslrootcert``, ``sslcert`` and ``sslkey`` in their
query; libpq reads them itself, after :func:`shared.events.tls.pg_ssl_argument` has refused the
combinations that would check nothing (``sslrootcert=system`` with a weak mode).

SQLite runs in WAL mode with ``synchronous=FULL`` (a committed event survives power loss), a
busy timeout, and transactions that the code begins itself: writers ``BEGIN IMMEDIATE`` so that
concurrent appenders queue instead of failing half-way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, StaticPool, event
from sqlalchemy import create_engine as sqlalchemy_engine
from sqlalchemy.engine import make_url

from .tls import PG_SSL_PARAMS, pg_ssl_argument

WRITE = "guanhuai_write"  # execution option: this connection's transactions will write
# The three SQLite settings below were each measured in A/B runs of the services (docs/performance.md,
# "Why the SQLite settings"): batches dirty pages all over indexes keyed by random ids.
SERVICE_SQLITE_CACHE_KIB = 64 * 1024  # page cache per service connection: the random-id indexes' leaf pages stay in it
SQLITE_PAGE_BYTES = 16 * 1024  # page size of a new log: fewer, shallower pages dirtied per batch
SERVICE_SQLITE_CHECKPOINT_BYTES = 40 * 1024 * 1024  # WAL length before a checkpoint: each page copied back once per few batches


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` / ``sqlite://`` URLs (and the async drivers' names of earlier
    versions' settings) and pick the drivers: ``sqlite3`` and ``psycopg`` 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.drivername in ("sqlite", "sqlite+aiosqlite"):
        parsed = parsed.set(drivername="sqlite+pysqlite")
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str, *, echo: bool = False, sqlite_cache_kib: int | None = None,
                  sqlite_checkpoint_bytes: int | None = None) -> Engine:
    """``sqlite_cache_kib``: SQLite's page cache per connection; ``sqlite_checkpoint_bytes``: the
    WAL's length past which a commit is followed by a checkpoint, in bytes, counted in whole pages
    of the file's page size, at least one (None: SQLite's defaults, 1,000 pages)."""
    for name, value in (("sqlite_cache_kib", sqlite_cache_kib), ("sqlite_checkpoint_bytes", sqlite_checkpoint_bytes)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
            raise ValueError(f"{name} is a positive whole number, not {value!r}")
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        memory = not parsed.database or parsed.database == ":memory:"
        if not memory:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
        # A file is opened by any worker thread (SQLAlchemy pools it, check_same_thread off); a
        # database in memory is one connection shared by them all, one statement at a time.
        pool = {"poolclass": StaticPool} if memory else {"pool_size": 10, "max_overflow": 10}
        engine = sqlalchemy_engine(url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False}, **pool)
        _configure_sqlite(engine, sqlite_cache_kib, sqlite_checkpoint_bytes)
        return engine
    given = {k: parsed.query[k] for k in PG_SSL_PARAMS if k in parsed.query}
    if given:  # libpq applies them, spelled out with guanhuai's documented meaning (see tls)
        spelled = pg_ssl_argument(**{k: (v[-1] if isinstance(v, tuple) else v) for k, v in given.items()})
        parsed = parsed.difference_update_query(PG_SSL_PARAMS).update_query_dict(spelled)
    return sqlalchemy_engine(parsed, echo=echo, pool_size=10, max_overflow=10, pool_pre_ping=True)


def _configure_sqlite(engine: Engine, cache_kib: int | None = None, checkpoint_bytes: int | None = None) -> None:
    @event.listens_for(engine, "connect")
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

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")


@contextmanager
def write_connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose transactions take the write lock up front (on SQLite); not yet begun."""
    with engine.connect() as conn:
        yield conn.execution_options(**{WRITE: True})
