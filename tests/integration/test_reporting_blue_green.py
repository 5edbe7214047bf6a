"""A rebuild runs beside the live projection (blue/green): while it builds the new version of the
read models, reports keep coming from the serving one (its figures, never empty) and the live
projection keeps it current; the switch takes in every event recorded meanwhile; after it, reports
come from the new version and the live projection writes into it (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from typing import Any

import pytest
from sqlalchemy import inspect, select, update

from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata as enrollment_tables
from services.reporting import storage
from services.reporting import tables as t
from services.reporting.handlers import ReportingHandler
from services.reporting.projection import ReportState
from services.reporting.service import compute_report
from shared.events import EventMessage
from shared.events.consumer import Incoming, process_batch
from shared.events.inbox import metadata as inbox_tables
from shared.events.relay import published_body
from shared.events.store import EventStore
from shared.events.subjects import EVENTS_STREAM, event_subject, inbound_stream, inbound_subject
from tests.support.programme import households


async def enroll(store: EventStore, registrations: list[EventMessage]) -> None:
    sent = [Incoming(subject=inbound_subject("county", r.event_type), body=r.model_dump_json().encode(),
                     headers={"Nats-Msg-Id": str(r.event_id)}, stream=inbound_stream("county"), sequence=n)
            for n, r in enumerate(registrations, 1)]
    assert (await process_batch(store, EnrollmentHandler(), sent)).handled == len(registrations)


async def project_live(store: EventStore, handler: ReportingHandler, after: int) -> int:
    """Hand the live projection what the log holds after ``after``, as NATS would; the last position."""
    rows = store.pager(after, batch_size=100_000)()
    messages = [Incoming(subject=event_subject(row[4]), body=published_body(row), headers={"Nats-Msg-Id": row[1]},
                         stream=EVENTS_STREAM, sequence=row[0]) for row in rows]
    result = await process_batch(store, handler, messages)
    assert (result.handled, result.dead_lettered, result.failed) == (len(rows), 0, [])
    return rows[-1][0] if rows else after


def figures(state: ReportState) -> dict[str, Any]:
    return {"position": state.position, "townships": {k: asdict(v) for k, v in state.townships.items()},
            "rejections": dict(state.rejections), "subsidy_lines": state.subsidy_lines, "monthly": state.monthly,
            "disbursed": state.disbursed, "areas": state.areas}


async def policies_reported(store: EventStore) -> int:
    report, _warning = await compute_report(store, 2024)
    return report.total.figures.policies


async def policies_in_log(store: EventStore) -> int:
    return sum(1 for row in store.pager(0, batch_size=100_000)() if row[4] == "PolicyIssued")


async def test_a_rebuild_serves_the_old_version_until_it_switches_and_loses_no_live_event(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables, t.metadata)
    regs = households(40, seed=11)
    await enroll(store, regs[:30])
    fed = await project_live(store, ReportingHandler(store), 0)
    issued = await policies_in_log(store)
    assert issued >= 10
    # The serving version holds what an older projection made: 1,000 policies more per row.
    await store.write(lambda tx: tx.connection.execute(
        update(t.township_year).values(policies=t.township_year.c.policies + 1000)))
    rows = await store.read(lambda conn: len(conn.execute(select(t.township_year)).all()))
    old = await policies_reported(store)
    assert old == issued + 1000 * rows
    live = ReportingHandler(store)  # the live projection, on the serving version
    loop = asyncio.get_running_loop()
    seen: dict[str, int] = {}

    def during_rebuild(position: int) -> None:
        if seen:
            return
        # Mid-rebuild: the report is the serving version's, whole...
        seen["before"] = asyncio.run_coroutine_threadsafe(policies_reported(store), loop).result()
        # ... and a household arrives and is projected live into the serving version.
        asyncio.run_coroutine_threadsafe(enroll(store, regs[30:32]), loop).result()
        seen["fed"] = asyncio.run_coroutine_threadsafe(project_live(store, live, fed), loop).result()
        seen["after_live"] = asyncio.run_coroutine_threadsafe(policies_reported(store), loop).result()
        seen["at"] = position

    state = await asyncio.to_thread(storage.rebuild_now, store, during_rebuild, batch_size=5)

    assert seen["at"] < seen["fed"]  # the live events came while the rebuild was part-way through the log
    assert seen["before"] == old
    now_issued = await policies_in_log(store)
    assert now_issued > issued
    assert seen["after_live"] == old + (now_issued - issued)  # the serving version, projected live
    # Switched: the new version's figures, made from the log alone, with the live events in it.
    assert state.position == seen["fed"]
    assert await policies_reported(store) == now_issued
    from_log = await asyncio.to_thread(storage.project_now, store)
    assert figures(await store.read(storage.load)) == figures(from_log)
    assert await store.read(storage.serving_version) == 1
    names = await store.read(lambda conn: inspect(conn).get_table_names())
    assert not [name for name in names if name.endswith(storage.BUILDING)]
    county = await store.read(lambda conn: conn.exec_driver_sql("SELECT policies FROM report_county_year").all())
    assert [tuple(r) for r in county] == [(now_issued,)]

    # The live projection goes on in the new version (it reloads: same position, another version).
    await enroll(store, regs[32:])
    await project_live(store, live, seen["fed"])
    assert await policies_reported(store) == await policies_in_log(store)
    assert figures(await store.read(storage.load)) == figures(await asyncio.to_thread(storage.project_now, store))


async def test_a_rebuild_interrupted_part_way_leaves_the_serving_version_and_the_next_one_starts_afresh(
        store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables, t.metadata)
    await enroll(store, households(20, seed=12))
    first = await storage.rebuild(store)
    served = figures(await store.read(storage.load))

    def interrupt(position: int) -> None:
        raise KeyboardInterrupt

    try:
        await asyncio.to_thread(storage.rebuild_now, store, interrupt, batch_size=5)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the rebuild was not interrupted")
    assert figures(await store.read(storage.load)) == served
    again = await storage.rebuild(store)
    assert figures(again) == figures(first) == served
    assert await store.read(storage.serving_version) == 2


async def test_on_postgresql_the_switch_waits_for_readers_of_the_serving_tables_without_holding_up_appends(
        store: EventStore) -> None:
    if store.dialect != "postgresql":
        pytest.skip("PostgreSQL only: an SQLite reader reads its own snapshot and holds up no writer")
    await store.create_schema(inbox_tables, enrollment_tables, t.metadata)
    regs = households(14, seed=13)
    await enroll(store, regs[:10])
    await storage.rebuild(store)
    reader = store.engine.connect()  # a report's transaction on the serving tables, left open
    reader.execute(select(t.township_year)).all()
    try:
        switching = asyncio.ensure_future(storage.rebuild(store, lock_timeout_s=0.2))
        await asyncio.sleep(1.5)
        assert not switching.done()  # the switch waits for the reader...
        await asyncio.wait_for(enroll(store, regs[10:]), 5)  # ... and appends go on meanwhile
    finally:
        reader.rollback()
        reader.close()
    state = await switching
    assert state.position == await store.head_position()
    assert await store.read(storage.serving_version) == 2
    assert await policies_reported(store) == await policies_in_log(store)
