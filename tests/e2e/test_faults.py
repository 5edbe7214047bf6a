"""Faults survived: a service killed mid-batch, nats-server restarted mid-stream."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from shared.events.audit import verify_chain
from shared.events.store import EventStore
from tests.support.pipeline import Pipeline
from tests.support.programme import households, plan, subsidised_persons


async def assert_exactly_once(pipeline: Pipeline, registrations: int) -> None:
    counts = await pipeline.settled()
    assert counts["HouseholdRegistered"] == registrations
    assert counts["PolicyIssued"] + counts["HouseholdRejected"] == registrations
    store = await EventStore.open(pipeline.db_url, create=False)
    try:
        result = await verify_chain(store)
        assert result.ok and result.checked == sum(counts.values())  # gap-free, untampered
        streams = [e.stream_id async for batch in store.read_all(event_types=["PolicyIssued"]) for e in batch]
        assert len(streams) == len(set(streams)) == counts["PolicyIssued"]
    finally:
        await store.close()


async def test_a_service_killed_mid_batch_and_restarted_leaves_no_duplicate_and_no_gap(pipeline: Pipeline) -> None:
    await pipeline.publish("county", [plan()])
    regs = households(600, seed=21)
    # The second half is sent only once the services are dead, so they are killed while inputs are
    # still coming (a service handles 300 households faster than a poll could catch it mid-way).
    publishing = asyncio.create_task(pipeline.publish("county", regs[:300]))
    await pipeline.wait_for(lambda c: c["PolicyIssued"] >= 60, timeout=120)
    pipeline.kill("enrollment")
    pipeline.kill("subsidy")
    await publishing
    await pipeline.publish("county", regs[300:])
    before = await pipeline.counts()
    assert before["PolicyIssued"] < 600  # really killed mid-stream
    pipeline.start_component("enrollment")
    pipeline.start_component("subsidy")
    await pipeline.wait_for(lambda c: c["PolicyIssued"] == 600, timeout=180)
    await assert_exactly_once(pipeline, 600)
    counts = await pipeline.counts()
    assert counts["SubsidyApproved"] == subsidised_persons(regs)


async def test_nats_server_restarted_mid_stream_loses_nothing(pipeline: Pipeline) -> None:
    regs = households(300, seed=33)
    await pipeline.publish("county", regs[:150])
    await pipeline.wait_for(lambda c: c["PolicyIssued"] >= 20, timeout=120)
    pipeline.nats.restart(kill=True)  # same port, same store: the clients reconnect
    await asyncio.sleep(0.5)
    await pipeline.publish("county", regs[150:])
    await pipeline.wait_for(lambda c: c["PolicyIssued"] == 300, timeout=180)
    await assert_exactly_once(pipeline, 300)


async def test_components_stopped_while_nats_is_away_exit_cleanly(tmp_path: Path) -> None:
    # An operator stops the services during a NATS outage: each ends at once, exit code 0, no
    # uncaught exception, and says that it stopped without draining (what it had not acked comes back).
    running = Pipeline(tmp_path, f"sqlite:///{tmp_path / 'log.db'}")
    running.nats.start()
    try:
        for name in ("relay", "enrollment", "subsidy"):
            running.start_component(name)
        await running.connect()
        await running.wait_ready_for(("enrollment-county-v1", "subsidy-v1"))
        for _ in range(300):  # and the relay is connected and tailing the log
            if "relay_started" in running.all_output():
                break
            await asyncio.sleep(0.1)
        await running.nc.close()
        running.nc = None
        running.nats.stop()
        await asyncio.sleep(1.5)  # the clients notice and start reconnecting
        running.check_alive()
        for process in running.processes.values():
            process.send_signal(signal.SIGTERM)
        codes = {key: process.wait(40) for key, process in running.processes.items()}
        output = running.all_output()
        assert codes == {"relay": 0, "enrollment": 0, "subsidy": 0}, output[-3000:]
        # No uncaught exception on the way out (typer draws one in a box; the outage itself is
        # logged, reconnect failures with their tracebacks, before the stop).
        assert "╭─" not in output and "ConnectionReconnectingError" not in output, output[-3000:]
        assert output.count("stopped_without_drain") == 3, output[-3000:]  # each of the three
    finally:
        for process in running.processes.values():
            if process.poll() is None:
                process.kill()
        running.processes.clear()
        running.nats.stop()


async def test_a_relay_stopped_before_nats_was_ever_there_exits(tmp_path: Path) -> None:
    running = Pipeline(tmp_path, f"sqlite:///{tmp_path / 'log.db'}")  # its nats-server never started
    key = running.start_component("relay")
    try:
        await asyncio.sleep(4)  # started, trying to connect
        running.check_alive()
        running.processes[key].send_signal(signal.SIGTERM)
        assert running.processes[key].wait(20) == 0
        assert "relay_stopped_before_connecting" in running.all_output()
    finally:
        if running.processes[key].poll() is None:
            running.processes[key].kill()
