"""The peer of ``guanhuai bench store``: the ``eventsourcing`` library (9.5.x, a bench-only extra:
``pip install -e '.[bench]'``) on its SQLite persistence module, through its public API only.

Same events as ours: each of our ``EventMessage`` objects becomes one of its domain events (a
frozen dataclass per event type, subclass of its ``DomainEvent``): the stream's UUID (uuid5 of our
stream id; its ``DomainEvent`` wants a UUID), the version in the stream, ``occurred_at`` as its
timestamp, our event id, schema version, source, correlation and causation ids, and the payload as
JSON data (``model_dump(mode="json")``). Append: those events made from ours and saved with
``Application.save`` in batches of the same size as ours (one transaction per batch; its
recorder inserts row by row). Replay: every notification from its ``notification_log``, 2,000 at a
time as ours reads, mapped back to a domain event by ``app.mapper.to_domain_event`` (its
transcoder decodes the JSON and the UUIDs and datetimes; the payload stays a dict: the library
does not validate, where our replay validates every payload into its typed model).

Durability, as the log's where the library allows: a file database in the bench's workdir, WAL
(the library sets it), ``synchronous`` left at SQLite's default, which on this build is FULL as
ours (recorded with the figures), and the log's page size (the file is made with it before the
library opens it; a page size belongs to the file). The library has no setting for its
connections' cache size or WAL checkpoint interval, which ours sets.
"""

from __future__ import annotations

import importlib.metadata
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.events.base import EventMessage
from shared.events.database import SQLITE_PAGE_BYTES

INSTALL_HINT = "pip install -e '.[bench]'"
PAGE = 2000  # notifications per select, as our replay's page
STREAM_NAMESPACE = uuid.UUID("6f1c7e8e-2b0e-4d55-9a49-3a0b6c1d2e20")


def available() -> bool:
    try:
        import eventsourcing  # noqa: F401
    except ImportError:
        return False
    return True


def skipped_reason() -> str:
    return f"eventsourcing is not installed: the peer was skipped (install it with {INSTALL_HINT})"


def version() -> str | None:
    try:
        return importlib.metadata.version("eventsourcing")
    except importlib.metadata.PackageNotFoundError:
        return None


if available():
    from eventsourcing.application import Application
    from eventsourcing.domain import DomainEvent

    class PeerLog(Application):
        """The application whose recorder holds the events; its notification log pages 2,000 at a time."""

        log_section_size = PAGE

    class Recorded(DomainEvent):
        """One of our events, as the library's domain event."""

        event_id: uuid.UUID
        schema_version: int
        source: str
        correlation_id: uuid.UUID
        causation_id: uuid.UUID | None
        payload: dict[str, Any]

    # One class (one topic) per event type, as a model written for the library would have.
    class HouseholdRegistered(Recorded):
        pass

    class PolicyIssued(Recorded):
        pass

    class HouseholdRejected(Recorded):
        pass

    class SubsidyApproved(Recorded):
        pass

    class ClaimReported(Recorded):
        pass

    EVENT_CLASSES: dict[str, type[Recorded]] = {
        cls.__name__: cls for cls in (HouseholdRegistered, PolicyIssued, HouseholdRejected, SubsidyApproved, ClaimReported)
    }


@dataclass
class Peer:
    """An open ``eventsourcing`` application on a file database."""

    app: Any
    path: Path

    @classmethod
    def open(cls, path: Path) -> Peer:
        if not available():
            raise RuntimeError(skipped_reason())
        with closing(sqlite3.connect(path)) as conn:  # the log's page size, fixed when the file is made
            conn.execute(f"PRAGMA page_size={SQLITE_PAGE_BYTES:d}")
            conn.execute("PRAGMA journal_mode=WAL")
        return cls(PeerLog(env={"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": str(path)}), path)

    def append(self, streams: Iterable[tuple[str, list[EventMessage]]]) -> int:
        """Make the library's events from ours (each stream from version 1) and save them in one
        transaction; how many were saved."""
        events = []
        for stream_id, evs in streams:
            originator = uuid.uuid5(STREAM_NAMESPACE, stream_id)
            for version, ev in enumerate(evs, start=1):
                events.append(EVENT_CLASSES[ev.event_type](
                    originator_id=originator, originator_version=version, timestamp=ev.occurred_at,
                    event_id=ev.event_id, schema_version=ev.schema_version, source=ev.source,
                    correlation_id=ev.correlation_id, causation_id=ev.causation_id,
                    payload=ev.payload.model_dump(mode="json"),
                ))
        self.app.save(*events)
        return len(events)

    def replay(self, total: int, progress: Callable[[str, int, int], None], label: str) -> tuple[int, float]:
        """Every notification mapped to its domain event: (how many, seconds)."""
        log, mapper = self.app.notification_log, self.app.mapper
        n, start = 0, 1
        t0 = time.perf_counter()
        while True:
            notifications = log.select(start, PAGE)
            if not notifications:
                break
            decoded = [mapper.to_domain_event(item) for item in notifications]
            n += len(decoded)
            start = notifications[-1].id + 1
            progress(label, n, total)
        return n, time.perf_counter() - t0

    def settings(self) -> dict[str, Any]:
        """What the file and a default connection on this build say: journal mode, page size,
        synchronous (the library leaves it at the default)."""
        with closing(sqlite3.connect(self.path)) as conn:
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return {"journal_mode": journal, "page_size": page, "synchronous": names.get(synchronous, str(synchronous)),
                "synchronous_set_by": "SQLite's default on this build (the library sets none)"}

    def close(self) -> None:
        self.app.close()
