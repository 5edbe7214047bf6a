"""The live reporting projection, handed a batch that starts beyond its checkpoint (NATS lost or
held back earlier messages), reads what it missed from the log first: in the worker thread that
runs the batch, while the batch's transaction holds the log's write lock. Its read model then
equals a rebuild from the log alone (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata as enrollment_tables
from services.reporting import tables as t
from services.reporting.handlers import ReportingHandler
from services.reporting.storage import PROJECTION, rebuild
from shared.events.consumer import Incoming, process_batch
from shared.events.inbox import metadata as inbox_tables
from shared.events.relay import published_body
from shared.events.store import EventStore
from shared.events.subjects import EVENTS_STREAM, event_subject, inbound_stream, inbound_subject
from tests.support.programme import households


def read_model(store: EventStore) -> Any:
    return store.read(lambda conn: {table.name: sorted(tuple(r) for r in conn.execute(select(table)))
                                    for table in t.READ_MODEL_TABLES})


async def test_a_batch_beyond_the_checkpoint_is_preceded_by_the_events_it_missed_read_from_the_log(
        store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables, t.metadata)
    regs = households(8, seed=5)
    sent = [Incoming(subject=inbound_subject("county", r.event_type), body=r.model_dump_json().encode(),
                     headers={"Nats-Msg-Id": str(r.event_id)}, stream=inbound_stream("county"), sequence=n)
            for n, r in enumerate(regs, 1)]
    assert (await process_batch(store, EnrollmentHandler(), sent)).handled == len(regs)
    rows = store.pager(0)()  # the whole log: the registrations and what enrollment decided
    issued = [row[0] for row in rows if row[4] == "PolicyIssued"]
    assert len(issued) >= 3
    # Only the events from the third policy on reach the projection: two policies lie in the gap.
    tail = [row for row in rows if row[0] >= issued[2]]
    messages = [Incoming(subject=event_subject(row[4]), body=published_body(row), headers={"Nats-Msg-Id": row[1]},
                         stream=EVENTS_STREAM, sequence=row[0]) for row in tail]

    result = await process_batch(store, ReportingHandler(store), messages)

    assert (result.handled, result.dead_lettered, result.failed) == (len(tail), 0, [])
    live = await read_model(store)
    assert live["report_checkpoint"] == [(PROJECTION, rows[-1][0])]
    policies = await store.read(lambda conn: conn.execute(select(func.sum(t.township_year.c.policies))).scalar_one())
    assert policies == len(issued)  # every policy, the two missed ones too
    await rebuild(store)
    assert await read_model(store) == live
