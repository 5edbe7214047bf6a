"""What every consuming service keeps beside the log: which inputs it has handled, the dead
letters (inputs it could not take, with the original bytes and the reason), and a version of
each consumer's state.

The first two are written in the same transaction as the events an input leads to, so an input
is handled exactly once in effect, whatever NATS redelivers and whatever the JetStream duplicate
window. Neither is ever updated or deleted from. ``consumer_versions`` counts the commits that
changed a consumer's state (its inputs and its own tables): a batch decided outside the log's
write lock is written only if that count has not moved since its state was read
(see :func:`shared.events.consumer.process_batch`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy import Connection

from .bulk import insert_rows
from .keyed import CHUNK, select_where_in
from .tables import UtcDateTime

metadata = MetaData()

processed_messages = Table(
    "processed_messages",
    metadata,
    Column("consumer", String(100), nullable=False),
    Column("message_id", String(64), nullable=False, comment="the input's event id"),
    Column("processed_at", UtcDateTime, nullable=False),
    PrimaryKeyConstraint("consumer", "message_id"),
)

consumer_versions = Table(
    "consumer_versions",
    metadata,
    Column("consumer", String(100), primary_key=True),
    Column("version", BigInteger, nullable=False, comment="commits that changed this consumer's state"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("consumer", String(100), nullable=False),
    Column("nats_stream", String(100), nullable=False),
    Column("nats_sequence", BigInteger, nullable=False),
    Column("subject", String(300), nullable=False),
    Column("headers", Text, nullable=False, comment="JSON object of the message headers"),
    Column("body", LargeBinary, nullable=False, comment="the original bytes, exactly as received"),
    Column("reason", String(100), nullable=False, comment="reason code"),
    Column("detail", Text, nullable=False),
    Column("event_id", String(64), nullable=True),
    Column("received_at", UtcDateTime, nullable=False),
    UniqueConstraint("consumer", "nats_stream", "nats_sequence", name="uq_dead_letter_message"),
)


@dataclass(frozen=True)
class DeadLetter:
    consumer: str
    nats_stream: str
    nats_sequence: int
    subject: str
    headers: dict[str, str]
    body: bytes
    reason: str
    detail: str
    event_id: str | None = None


def already_processed(conn: Connection, consumer: str, ids: list[str]) -> set[str]:
    """Which of ``ids`` (input event ids) ``consumer`` has handled."""
    column = processed_messages.c.message_id
    seen: set[str] = set()
    for start in range(0, len(ids), CHUNK):
        rows = select_where_in(conn, (column,), processed_messages.c.consumer, consumer, column,
                                     ids[start : start + CHUNK])
        seen.update(r[0] for r in rows)
    return seen


def mark_processed(conn: Connection, consumer: str, ids: list[str]) -> None:
    if ids:
        now = datetime.now(timezone.utc)
        insert_rows(conn, processed_messages, ("consumer", "message_id", "processed_at"), [(consumer, i, now) for i in ids])


def consumer_version(conn: Connection, consumer: str) -> int:
    """How many commits have changed ``consumer``'s state so far (0 before the first)."""
    query = select(consumer_versions.c.version).where(consumer_versions.c.consumer == consumer)
    return (conn.execute(query)).scalar_one_or_none() or 0


def bump_consumer_version(conn: Connection, consumer: str) -> None:
    """Count one more change of ``consumer``'s state. Called under the log's write lock, which
    every writer holds, so the update-or-insert cannot race with another instance."""
    c = consumer_versions.c
    done = conn.execute(update(consumer_versions).where(c.consumer == consumer).values(version=c.version + 1))
    if done.rowcount == 0:
        conn.execute(insert(consumer_versions), {"consumer": consumer, "version": 1})


def record_dead_letters(conn: Connection, letters: list[DeadLetter]) -> int:
    """Insert dead letters not stored yet (a redelivered poison message is stored once)."""
    if not letters:
        return 0
    keys = {(d.nats_stream, d.nats_sequence) for d in letters}
    seen_rows = conn.execute(
        select(dead_letters.c.nats_stream, dead_letters.c.nats_sequence).where(
            dead_letters.c.consumer == letters[0].consumer,
            dead_letters.c.nats_sequence.in_([k[1] for k in keys]),
        )
    )
    seen = {(r[0], r[1]) for r in seen_rows}
    now = datetime.now(timezone.utc)
    rows: list[dict[str, Any]] = [
        {
            "consumer": d.consumer, "nats_stream": d.nats_stream, "nats_sequence": d.nats_sequence, "subject": d.subject,
            "headers": json.dumps(d.headers, ensure_ascii=False), "body": d.body, "reason": d.reason,
            "detail": d.detail, "event_id": d.event_id, "received_at": now,
        }
        for d in letters
        if (d.nats_stream, d.nats_sequence) not in seen
    ]
    if rows:
        conn.execute(insert(dead_letters), rows)
    return len(rows)
