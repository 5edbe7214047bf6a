"""SQL tables of the event log. Table and column names are a public contract: SQL tools read them.

``events`` is append-only: triggers refuse UPDATE and DELETE, and nothing in this code base
issues either. Timestamps are UTC (TIMESTAMPTZ on PostgreSQL; fixed-width ISO 8601 text on
SQLite, so that text order is time order).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

metadata = MetaData()


def utc_text(instant: datetime) -> str:
    """The canonical text of an instant: UTC, microseconds, ``+00:00``. Used for hashing and SQLite."""
    return instant.astimezone(timezone.utc).isoformat(timespec="microseconds")


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on both databases."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect):  # type: ignore[no-untyped-def]
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(32))
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the event log stores timezone-aware instants only")
        if dialect.name == "sqlite":
            return utc_text(value)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value)
        return value.astimezone(timezone.utc)


Position = BigInteger().with_variant(Integer(), "sqlite")  # SQLite: a rowid alias

events = Table(
    "events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=False, comment="global gap-free order, from 1"),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("stream_id", String(200), nullable=False),
    Column("stream_version", Integer, nullable=False),
    Column("event_type", String(100), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("source", String(200), nullable=False),
    Column("correlation_id", String(36), nullable=False),
    Column("causation_id", String(36), nullable=True),
    Column("payload", Text, nullable=False, comment="the payload as JSON text, exactly as hashed"),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, comment="sha256 over prev_hash and this row's fields"),
    UniqueConstraint("stream_id", "stream_version", name="uq_events_stream_version"),
    Index("ix_events_recorded_at", "recorded_at"),
    Index("ix_events_event_type", "event_type"),
)

_SQLITE_GUARDS = [
    "CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events "
    "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events "
    "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END",
]
_POSTGRES_GUARDS = [
    "CREATE OR REPLACE FUNCTION guanhuai_events_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the event log is append-only'; END $$",
    "DROP TRIGGER IF EXISTS events_append_only ON events",
    "CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events "
    "FOR EACH STATEMENT EXECUTE FUNCTION guanhuai_events_append_only()",
]


@event.listens_for(events, "after_create")
def _append_only_guards(target, connection, **kw):  # type: ignore[no-untyped-def]
    statements = _SQLITE_GUARDS if connection.dialect.name == "sqlite" else _POSTGRES_GUARDS
    for sql in statements:
        connection.exec_driver_sql(sql)
