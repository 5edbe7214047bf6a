"""The red-team suite: attacks on guanhuai's promises by a crash loop and an unlucky operator,
against a real nats-server and the real ``guanhuai serve`` processes. Each test prints one line
``probe <name>: sent N, recorded N, dead-lettered D, lost 0, ...``, repeated at the end of the run
(tests/support/probes.py). Other attacks of issue #17 live beside the code they attack
(tests/integration/test_*): inbox snooping, producer id collisions, policy numbers, log masking,
the audit, exports and the API.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats.errors
import pytest
from nats.js.api import ConsumerConfig
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from guanhuai.ops import status
from shared.settings import Settings
from services.enrollment.bootstrap import consumer_specs
from shared.events.given_up import GIVEN_UP_STREAM, REASON
from shared.events.inbox import dead_letters
from shared.events.producers import recorded_id
from shared.events.store import EventStore
from shared.events.subjects import inbound_subject
from tests.support.pipeline import Pipeline
from tests.support.probes import probe
from tests.support.programme import households

ENROLLMENT = consumer_specs()[0]


@pytest.fixture
async def enrollment_only(tmp_path: Path) -> AsyncIterator[Pipeline]:
    """A nats-server with the production accounts and the enrollment service, nothing else (its
    durable consumer exists)."""
    pipeline = Pipeline(tmp_path, f"sqlite:///{tmp_path / 'log.db'}", secured=True)
    pipeline.nats.start()
    try:
        pipeline.start_component("enrollment")
        await pipeline.connect()
        await pipeline.wait_ready_for((ENROLLMENT.durable,))
        yield pipeline
    finally:
        await pipeline.stop()


def _stop(pipeline: Pipeline, key: str) -> None:
    process = pipeline.processes.pop(key)
    process.terminate()
    process.wait(60)  # a batch held for the database ends with the graceful timeout (30 s)


async def _letters(db_url: str) -> list[dict]:
    store = await EventStore.open(db_url, create=False)
    try:
        with store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(select(dead_letters))]
    except OperationalError:  # the service has not created its tables yet
        return []
    finally:
        await store.close()


async def _until(check, timeout: float, pipeline: Pipeline):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        pipeline.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(pipeline.tail_logs())
        await asyncio.sleep(0.25)


async def test_a_batch_given_up_after_five_unacked_deliveries_is_dead_lettered_with_its_bytes(
        enrollment_only: Pipeline) -> None:
    """Enrollment dies holding the same batch on five deliveries in a row (as under ``kill -9``:
    fetched, never acked). JetStream gives up on it at max_deliver; every household must then be a
    dead letter with its original bytes, in the logs and in ``guanhuai status``."""
    pipeline = enrollment_only
    pipeline.kill("enrollment")
    js = pipeline.js
    # The same consumer, with a short ack wait so that five "crashes" take seconds, not minutes.
    info = await js.consumer_info(ENROLLMENT.stream, ENROLLMENT.durable)
    config: ConsumerConfig = info.config
    config.ack_wait = 1.0
    await js.add_consumer(ENROLLMENT.stream, config)
    sent = households(40, seed=17)
    bodies = {}
    for message in sent:
        body = message.model_dump_json().encode()
        bodies[str(recorded_id("county", message.event_id))] = body  # (the log's ids are scoped by producer)
        await pipeline.publish_raw(inbound_subject("county", message.event_type), body, str(message.event_id))
    crashing = await js.pull_subscribe_bind(ENROLLMENT.durable, ENROLLMENT.stream)
    for _ in range(ENROLLMENT.max_deliver):
        fetched = await crashing.fetch(len(sent), timeout=5)  # taken, never acked: the process "died"
        assert len(fetched) == len(sent)
        await asyncio.sleep(1.3)
    # The next pull finds nothing: JetStream gives up on them (and says so, in advisories only).
    with pytest.raises((nats.errors.TimeoutError, asyncio.TimeoutError)):
        await crashing.fetch(len(sent), timeout=2)
    await crashing.unsubscribe()
    given_up = await js.stream_info(GIVEN_UP_STREAM)
    assert given_up.state.messages == len(sent)

    settings = Settings(db_url=pipeline.db_url, nats_url=pipeline.url_of("operator"))
    pipeline.start_component("enrollment")
    letters = await _until(lambda: _given_up_letters(pipeline.db_url, len(sent)), 60, pipeline)
    assert {letter["event_id"]: bytes(letter["body"]) for letter in letters} == bodies
    report = await status(settings, None)
    assert report["healthy"] is False
    assert report["consumers"][ENROLLMENT.durable]["given_up"] == len(sent)
    logged = [json.loads(line) for line in pipeline.all_output().splitlines() if line.startswith("{")]
    assert sum(line.get("event") == "given_up_dead_lettered" for line in logged) == len(sent)
    probe("crash_loop", sent=len(sent), recorded=0, dead_lettered=len(letters), lost=len(sent) - len(letters))


async def _given_up_letters(db_url: str, expected: int) -> list[dict] | None:
    letters = [letter for letter in await _letters(db_url) if letter["reason"] == REASON]
    return letters if len(letters) >= expected else None


async def test_inputs_wait_while_the_log_is_read_only_and_are_recorded_once_it_is_writable(
        enrollment_only: Pipeline) -> None:
    """The log is read-only while households wait: neither the handler nor a dead letter can be
    written. Nothing may be nak'ed into JetStream's max_deliver, and nothing dropped: the batch is
    held until the log is writable again, then recorded."""
    pipeline = enrollment_only
    _stop(pipeline, "enrollment")
    read_only = f"sqlite:///file:{pipeline.workdir / 'log.db'}?mode=ro&uri=true"
    writable = pipeline.db_url
    pipeline.db_url = read_only
    pipeline.start_component("enrollment")
    sent = households(60, seed=23)
    await pipeline.publish("county", sent)
    # Longer than five deliveries with their retries and nak delays took before.
    await asyncio.sleep(30)
    pipeline.check_alive()
    given_up = await pipeline.js.stream_info(GIVEN_UP_STREAM)
    assert given_up.state.messages == 0
    assert "batch_held_database_away" in pipeline.all_output()

    _stop(pipeline, "enrollment")
    pipeline.db_url = writable
    pipeline.start_component("enrollment")
    counts = await pipeline.wait_for(lambda c: c["HouseholdRegistered"] >= len(sent), timeout=60)
    letters = await _letters(writable)
    probe("read_only_log", sent=len(sent), recorded=counts["HouseholdRegistered"], dead_lettered=len(letters),
          lost=len(sent) - counts["HouseholdRegistered"] - len(letters))
    assert counts["HouseholdRegistered"] == len(sent)
    assert letters == []
