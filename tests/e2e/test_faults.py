"""Faults survived: a service killed mid-batch, nats-server restarted mid-stream."""

from __future__ import annotations

import asyncio

from shared.events.audit import verify_chain
from shared.events.store import EventStore
from tests.support.pipeline import Pipeline
from tests.support.programme import households, plan


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
    publishing = asyncio.create_task(pipeline.publish("county", regs))
    await pipeline.wait_for(lambda c: c["PolicyIssued"] >= 60, timeout=120)
    pipeline.kill("enrollment")
    pipeline.kill("subsidy")
    await publishing
    before = await pipeline.counts()
    assert before["PolicyIssued"] < 600  # really killed mid-stream
    pipeline.start_component("enrollment")
    pipeline.start_component("subsidy")
    await pipeline.wait_for(lambda c: c["PolicyIssued"] == 600, timeout=180)
    await assert_exactly_once(pipeline, 600)
    counts = await pipeline.counts()
    government_members = sum(len(r.payload.members) for r in regs if r.payload.payer == "government")
    assert counts["SubsidyApproved"] == government_members


async def test_nats_server_restarted_mid_stream_loses_nothing(pipeline: Pipeline) -> None:
    regs = households(300, seed=33)
    await pipeline.publish("county", regs[:150])
    await pipeline.wait_for(lambda c: c["PolicyIssued"] >= 20, timeout=120)
    pipeline.nats.restart(kill=True)  # same port, same store: the clients reconnect
    await asyncio.sleep(0.5)
    await pipeline.publish("county", regs[150:])
    await pipeline.wait_for(lambda c: c["PolicyIssued"] == 300, timeout=180)
    await assert_exactly_once(pipeline, 300)
