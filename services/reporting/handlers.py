"""The live projection: recorded events from NATS, applied in log order, saved with the checkpoint.

Events at or below the checkpoint are already in the read model and change nothing. If NATS hands
over an event beyond the next position (a gap), the missing events are read from the log first,
so the read model is always exactly a prefix of the log."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import ValidationError
from sqlalchemy import select

from services.reporting import storage
from services.reporting import tables as t
from services.reporting.projection import ReportState, apply
from services.reporting.views import Fact, decode_published
from shared.events import registry
from shared.events.consumer import Incoming, ProjectionHandler
from shared.events.registry import EventContractError
from shared.events.store import EventStore, Transaction

CONSUMES = ("guanhuai.events.>",)


@dataclass(frozen=True)
class Skipped:
    """A recorded event the projection has no view of: only its position matters."""

    position: int


class ReportingHandler(ProjectionHandler):
    consumer = "reporting-v1"

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.state: ReportState | None = None
        self.version = 0  # of the read models the state was loaded from (storage.serving_version)

    def parse(self, message: Incoming) -> Fact | Skipped:
        event_type = message.subject.rsplit(".", 1)[-1]
        registry.payload_class(event_type)  # an unknown type is a contract error (dead letter)
        try:
            decoded = decode_published(event_type, message.body)
            return Skipped(decoded) if isinstance(decoded, int) else decoded
        except ValidationError as exc:
            raise EventContractError("invalid_payload", f"{message.subject}: {exc.errors()[:3]}") from None

    def handle(self, tx: Transaction, events: Sequence[Fact | Skipped]) -> None:
        """Fold the batch in and save the changed rows with the checkpoint, in ``tx`` (run in a
        worker thread, under the log's write lock)."""
        conn = tx.connection
        row = conn.execute(select(t.checkpoint.c.position).where(t.checkpoint.c.name == storage.PROJECTION)).first()
        saved = int(row[0]) if row else 0
        version = storage.serving_version(conn)
        # First batch, or another instance moved on, or a rebuild switched in a new version (whose
        # rows were made by the log alone: what this state holds may differ at the same position).
        if self.state is None or self.state.position != saved or self.version != version:
            self.state = storage.load(conn)
            self.version = version
        state = self.state
        try:
            for item in sorted(events, key=lambda e: e.position):
                if item.position <= state.position:
                    continue  # applied already (a redelivery or an older message)
                if item.position > state.position + 1:
                    self._fill_gap(state, item.position - 1)
                if isinstance(item, Fact):
                    apply(state, item)
                else:
                    state.position = item.position
            storage.save(conn, state)
        except BaseException:
            self.state = None  # the transaction rolls back: reload what was committed next time
            raise

    def _fill_gap(self, state: ReportState, until: int) -> None:
        """Events between the checkpoint and what NATS handed over: read them from the log, in
        keyset pages. (The projection does not read every type, so most gaps are events it has no
        view of.)"""
        storage.catch_up(self.store, state, until, batch_size=1000)
