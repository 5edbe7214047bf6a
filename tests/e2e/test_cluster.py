"""A real cluster: the shipped three-node JetStream cluster (infra/nats/node-{1,2,3}.conf with the
shipped permissions, on loopback ports; see tests/support/cluster.py), streams with three replicas
(GUANHUAI_NATS_REPLICAS=3), the pipeline's components on it with PostgreSQL, and a county year
published by the county's and the insurer's own credentials while a node fails:

- the node leading the county's inbound stream is killed (kill -9) mid-year and started again;
- one node is partitioned away (stopped; the year goes on being published; started again).

Afterwards every input is accounted for as in the fault suite (tests/support/faults.py), and
every node holds the same copy of every stream. Each run prints
``fault <name>: published N, recorded N, lost 0, duplicated 0``, repeated at the end of the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from shared.events import EventMessage
from shared.events.given_up import GIVEN_UP_STREAM
from shared.events.subjects import EVENTS_STREAM, INBOUND_STREAMS, inbound_subject
from tests.conftest import _reset_pg
from tests.support.cluster import NatsCluster, leader_of, start_one_by_one, wait_replicas_current
from tests.support.faults import CountyYear, LoadGenerator, account, audit_verify, wait_mid_batch
from tests.support.pipeline import Pipeline

HOUSEHOLDS = 240
CLAIMS = 24
STREAMS = [*INBOUND_STREAMS.values(), EVENTS_STREAM, GIVEN_UP_STREAM]
COUNTY_STREAM = INBOUND_STREAMS["county"]

SUMMARY: list[str] = []


class _Summary:
    """Repeats the count lines at the end of the run (pytest captures the tests' own output)."""

    def pytest_terminal_summary(self, terminalreporter) -> None:  # type: ignore[no-untyped-def]
        if SUMMARY:
            terminalreporter.section("cluster")
            for line in SUMMARY:
                terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def cluster_summary(request: pytest.FixtureRequest) -> None:
    if request.config.pluginmanager.get_plugin("guanhuai-cluster") is None:
        request.config.pluginmanager.register(_Summary(), "guanhuai-cluster")


class Producers(LoadGenerator):
    """The fault suite's load generator, publishing as the county's and the insurer's systems do
    on the shipped accounts: each kind with its own credential (the operator may not publish)."""

    async def send(self, kind: str, message: EventMessage, msg_id: str | None = None) -> None:
        deadline = time.monotonic() + self.publish_timeout_s
        subject = inbound_subject(kind, message.event_type)
        while True:
            try:
                await self.pipeline.producer(subject).publish(
                    subject, message.model_dump_json().encode(),
                    headers={"Nats-Msg-Id": msg_id or str(message.event_id)}, timeout=5)
                return
            except Exception:  # noqa: BLE001 - no stream leader for a moment: publish again, same id
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                await asyncio.sleep(0.2)


@asynccontextmanager
async def on_cluster(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[Pipeline, NatsCluster]]:
    _reset_pg(db_url)
    cluster = NatsCluster(tmp_path / "nats")
    pipeline = Pipeline(tmp_path, db_url, secured=True, nats=cluster)
    pipeline.extra_env["GUANHUAI_NATS_REPLICAS"] = "3"
    try:
        await start_one_by_one(pipeline)  # started together on a fresh cluster, they crash (see there)
        for node in cluster.nodes.values():  # the shipped choice: fsync before acknowledging
            assert node.monitor("/varz")["jetstream"]["config"]["sync_always"] is True, node.name
        for stream in STREAMS:  # the services and the relay made them with three replicas
            info = await pipeline.js.stream_info(stream)
            assert info.config.num_replicas == 3, (stream, info.config.num_replicas)
        await wait_replicas_current(pipeline.js, STREAMS)
        yield pipeline, cluster
    finally:
        await pipeline.stop()


async def run_county_year(pipeline: Pipeline, cluster: NatsCluster, fault: str,
                          inject: Callable[[LoadGenerator], Awaitable[None]], *, seed: int) -> None:
    """Publish a county year, inject the fault while it is being published, wait until the
    pipeline has settled and every node is current, then account for every input."""
    year = CountyYear.build(HOUSEHOLDS, CLAIMS, seed=seed)
    generator = Producers(pipeline, year).start()
    try:
        await inject(generator)
    finally:
        generator.gate.set()
    await generator.finish()
    registrations = sum(1 for _, m in year.sends if m.event_type == "HouseholdRegistered")
    claims = sum(1 for _, m in year.sends if m.event_type == "ClaimReported")
    await pipeline.wait_for(lambda c: c["PolicyIssued"] + c["HouseholdRejected"] >= registrations
                            and c["ClaimPaid"] + c["ClaimRejected"] >= claims - 1, timeout=240)  # the unknown one waits
    await pipeline.settled(timeout=180)
    assert pipeline.exited() == {}, f"components ended by themselves: {pipeline.exited()}\n{pipeline.tail_logs()}"
    result = await account(pipeline, generator.published)
    line = result.line(fault)
    print(f"{line} (publish retries {generator.retries})")
    SUMMARY.append(line)
    assert result.problems == [], "\n".join(result.problems[:20])
    assert (result.published, result.recorded, result.lost, result.duplicated) == (len(year.sends), len(year.sends), 0, 0)
    assert f"audit ok: {result.events} events" in audit_verify(pipeline.db_url)
    # Every node has all of every stream: the node that was away caught up.
    await wait_replicas_current(pipeline.js, STREAMS)
    cluster.wait_healthy()
    states = cluster.stream_states()
    assert len(states) == 3 and all(s == states["guanhuai-1"] for s in states.values()), states
    assert states["guanhuai-1"][COUNTY_STREAM][0] == registrations + 1, states  # and the plan


async def test_the_stream_leader_killed_and_restarted_mid_year_loses_and_duplicates_nothing(
    tmp_path: Path, pg_database: str
) -> None:
    async with on_cluster(tmp_path, pg_database) as (pipeline, cluster):
        killed: list[str] = []

        async def inject(generator: LoadGenerator) -> None:
            await wait_mid_batch(pipeline, "enrollment")
            leader = cluster.node_named(await leader_of(pipeline.js, COUNTY_STREAM))
            killed.append(leader.name)
            leader.stop(kill=True)  # kill -9: same ports and store when it comes back
            generator.gate.set()  # the rest of the year arrives while it is down
            new_leader = await leader_of_when_elected(pipeline, COUNTY_STREAM, timeout=30)
            assert new_leader != leader.name
            await asyncio.sleep(2.0)
            leader.start()
            await asyncio.to_thread(cluster.wait_healthy)

        await run_county_year(pipeline, cluster, "kill -9 of the stream leader node", inject, seed=701)
        assert killed and cluster.node_named(killed[0]).running


async def test_a_node_partitioned_away_mid_year_loses_and_duplicates_nothing(tmp_path: Path, pg_database: str) -> None:
    async with on_cluster(tmp_path, pg_database) as (pipeline, cluster):
        away_for: list[int] = []

        async def inject(generator: LoadGenerator) -> None:
            await wait_mid_batch(pipeline, "enrollment")
            leader = await leader_of(pipeline.js, COUNTY_STREAM)
            node = next(n for n in cluster.nodes.values() if n.name != leader)  # a follower: the stream goes on
            node.stop()
            before = len(generator.published)
            generator.gate.set()  # publish while it is away
            deadline = time.monotonic() + 60
            while len(generator.published) < before + 50 and generator.running and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            away_for.append(len(generator.published) - before)
            node.start()
            await asyncio.to_thread(cluster.wait_healthy)

        await run_county_year(pipeline, cluster, "a node partitioned away", inject, seed=702)
        assert away_for and away_for[0] >= 50, f"only {away_for} inputs were published while the node was away"


async def leader_of_when_elected(pipeline: Pipeline, stream: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await leader_of(pipeline.js, stream)
        except Exception:  # noqa: BLE001 - no leader yet, or the request went to the dead node
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
