"""What became of published households: their ``PolicyIssued`` or ``HouseholdRejected``, read from
the event log.

``guanhuai publish`` runs beside the stack (``guanhuai up``) on the county's own machine, where the
log is at hand (GUANHUAI_DB_URL) while a county's NATS credential may not read
``guanhuai.events.>``. The log records a household under the id scoped by its producer kind
(:func:`shared.events.producers.recorded_id`) in its household's stream, and enrollment records the
outcome in the same stream with that id as its ``causation_id``: one look-up by the stream index
per household, however long the log is.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select

from services.enrollment.handlers import stream_of
from shared.events import EventMessage
from shared.events.enrollment import HouseholdRegistered, PolicyIssued
from shared.events.producers import recorded_id
from shared.events.store import EventStore
from shared.events.tables import events as events_table

OUTCOME_TYPES = ("PolicyIssued", "HouseholdRejected")
CHUNK = 500  # households per query (bound parameters stay well under every database's limit)


@dataclass(frozen=True)
class Outcome:
    """A household's answer: its policy (``policy_number``, who is insured) or its rejection."""

    policy_number: str | None
    insured: tuple[str, ...]  # resident ID numbers, upper case
    excluded: tuple[tuple[str, str], ...]  # (resident ID number, reason code) of members left out
    reasons: tuple[str, ...]  # why the household was rejected

    @property
    def rejected(self) -> bool:
        return self.policy_number is None


def households(events: Sequence[EventMessage]) -> list[EventMessage]:
    return [e for e in events if isinstance(e.payload, HouseholdRegistered)]


async def read_outcomes(store: EventStore, kind: str, sent: Sequence[EventMessage]) -> dict[uuid.UUID, Outcome]:
    """The outcomes recorded so far of households sent by a ``kind`` producer, by the id they were sent with."""
    found: dict[uuid.UUID, Outcome] = {}
    c = events_table.c
    for start in range(0, len(sent), CHUNK):
        chunk = sent[start : start + CHUNK]
        by_recorded = {str(recorded_id(kind, e.event_id)): e.event_id for e in chunk}
        query = select(*store.row_columns).where(
            c.stream_id.in_({stream_of(e) for e in chunk}), c.causation_id.in_(by_recorded),
            c.event_type.in_(OUTCOME_TYPES))
        rows = await store.read(lambda conn, query=query: conn.execute(query).all())
        for event in store.registry.parse_recorded_rows(rows):
            found[by_recorded[str(event.causation_id)]] = _outcome(event.payload)
    return found


def _outcome(payload: object) -> Outcome:
    excluded = tuple((m.resident_id, m.reason) for m in getattr(payload, "excluded", ()))
    if isinstance(payload, PolicyIssued):
        return Outcome(payload.policy_number, tuple(p.resident_id for p in payload.insured), excluded, ())
    return Outcome(None, (), excluded, tuple(getattr(payload, "reasons", ())))


async def wait_for_outcomes(db_url: str, kind: str, sent: Sequence[EventMessage], timeout: float,
                            progress: Callable[[int], None] | None = None,
                            poll: float = 0.5) -> dict[uuid.UUID, Outcome]:
    """Poll the log until every household in ``sent`` has its outcome or ``timeout`` seconds have
    passed; returns those found. ``progress`` is told how many are answered so far."""
    deadline = time.monotonic() + timeout
    found: dict[uuid.UUID, Outcome] = {}
    from guanhuai.ops import open_event_log  # (never creates a database the stack has not made)

    store = await open_event_log(db_url)
    try:
        while True:
            waiting = [e for e in sent if e.event_id not in found]
            found.update(await read_outcomes(store, kind, waiting))
            if progress:
                progress(len(found))
            if len(found) == len(sent) or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(min(poll, max(deadline - time.monotonic(), 0)))
    finally:
        await store.close()
