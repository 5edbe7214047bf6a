"""The live projection: recorded events from NATS, applied in log order, saved with the checkpoint.

Events at or below the checkpoint are already in the read model and change nothing. If NATS hands
over an event beyond the next position (a gap), the missing events are read from the log first,
so the read model is always exactly a prefix of the log."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from services.reporting import storage
from services.reporting import tables as t
from services.reporting.projection import ReportState, apply
from shared.events import EventMessage, RecordedEvent, registry
from shared.events.consumer import Incoming
from shared.events.store import EventStore, Transaction

CONSUMES = ("guanhuai.events.>",)


class ReportingHandler:
    consumer = "reporting-v1"
    tracks_inputs = False

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.state: ReportState | None = None

    def parse(self, message: Incoming) -> EventMessage:
        return registry.parse_published(message.subject, message.body)

    async def handle(self, tx: Transaction, events: Sequence[EventMessage]) -> None:
        conn = tx.connection
        row = (await conn.execute(select(t.checkpoint.c.position).where(t.checkpoint.c.name == storage.PROJECTION))).first()
        saved = int(row[0]) if row else 0
        if self.state is None or self.state.position != saved:  # first batch, or another instance moved on
            self.state = await storage.load(conn)
        state = self.state
        ordered = sorted((e for e in events if isinstance(e, RecordedEvent)), key=lambda e: e.position)
        try:
            for event in ordered:
                if event.position > state.position + 1:
                    async for gap in self.store.read_all(after=state.position, until_position=event.position - 1):
                        for missing in gap:
                            apply(state, missing)
                apply(state, event)
            await storage.save(conn, state)
        except BaseException:
            self.state = None  # the transaction rolls back: reload what was committed next time
            raise
