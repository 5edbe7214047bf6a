"""Verify the hash chain of the whole log (auditors' tool)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from .hashing import GENESIS, chain_hash
from sqlalchemy import select

from .store import EventStore
from .tables import events, utc_text


@dataclass(frozen=True)
class LogHead:
    """A point of the log an auditor can hold on to: the last position and its chain hash.
    Written ``POSITION:HASH`` (``0:`` followed by the genesis hash for an empty log)."""

    position: int
    hash: str

    def __str__(self) -> str:
        return f"{self.position}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> LogHead:
        position, sep, digest = text.strip().partition(":")
        if not sep or not position.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"a log head is POSITION:HASH (64 hex digits), not {text!r}")
        return cls(int(position), digest)


async def log_head(store: EventStore, until_position: int | None = None) -> LogHead:
    """The head of the log (or of its prefix up to ``until_position``): what a report computed
    from that prefix names, so that an auditor can prove later that the log still extends it."""
    query = select(events.c.position, events.c.hash).order_by(events.c.position.desc()).limit(1)
    if until_position is not None:
        query = query.where(events.c.position <= until_position)
    async with store.engine.connect() as conn:
        row = (await conn.execute(query)).first()
    return LogHead(row[0], row[1]) if row else LogHead(0, GENESIS)


@dataclass(frozen=True)
class VerifyResult:
    checked: int
    head_hash: str
    first_bad_position: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad_position is None


def _stamp(value: str | datetime) -> str:
    """Timestamps as hashed: SQLite rows hold the canonical text itself, PostgreSQL an instant."""
    return value if isinstance(value, str) else utc_text(value)


async def verify_chain(store: EventStore, on_progress: Callable[[int], None] | None = None) -> VerifyResult:
    """Walk the log in position order: positions must run 1, 2, 3, ...; each row's ``prev_hash``
    must be the previous row's ``hash``; each ``hash`` must match the row's fields."""
    columns = [c for c in events.c]
    names = [c.name for c in columns]
    prev, expected, checked = GENESIS, 1, 0
    async for rows in store.read_rows(0, batch_size=5000, columns=columns):
        for row in rows:
            r = dict(zip(names, row))
            position = r["position"]
            if position != expected:
                return VerifyResult(checked, prev, expected, f"position {expected} is missing (next is {position})")
            if r["prev_hash"] != prev:
                return VerifyResult(checked, prev, position, "prev_hash does not match the previous row's hash")
            digest = chain_hash(
                prev, position, r["event_id"], r["stream_id"], r["stream_version"], r["event_type"], r["schema_version"],
                _stamp(r["occurred_at"]), _stamp(r["recorded_at"]), r["source"], r["correlation_id"],
                r["causation_id"], r["payload"],
            )
            if digest != r["hash"]:
                return VerifyResult(checked, prev, position, "row contents do not match its hash (altered)")
            prev, expected, checked = digest, expected + 1, checked + 1
        if on_progress:
            on_progress(checked)
    return VerifyResult(checked, prev)
