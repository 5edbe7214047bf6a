"""Inputs JetStream gave up on become dead letters, never silence.

A consumer's ``max_deliver`` ends redelivery of a message that was delivered that many times
without an ack: a process killed on every delivery (a crash loop), or a fault that outlasted the
retries. JetStream then only publishes an advisory on
``$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>``. We keep those advisories in a
stream of their own (``GUANHUAI_GIVEN_UP``, created before any consumer), so none is missed while
no service runs, and each service sweeps the advisories of its own consumers: it fetches the
message by its stream sequence and records it as a dead letter with its original bytes (reason
``max_deliveries``), unless the service had in fact handled it (a crash between commit and ack).

Why this and not unlimited deliveries: a message that kills its process on every delivery would
then be redelivered for ever, and every innocent message of its batch with it; with a limit,
JetStream itself isolates the batch after ``max_deliver`` attempts, the service gets on with the
rest, and what was given up is kept for an operator (``guanhuai dlq list``, ``dlq retry``).

A dead letter that cannot be written (the database away, read-only or full) is not acked: the
advisory is delivered again, without limit, and each failure is logged at error level. The
inbound streams keep their messages (no age limit), so the bytes are there when it is retried.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy as JsAckPolicy
from nats.js.api import ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from .base import EventMessage
from .consumer import Handler, Incoming, admit, dead_letter_of
from .inbox import DeadLetter, already_processed, record_dead_letters
from .logs import get_logger
from .store import EventStore, Transaction

GIVEN_UP_STREAM = "GUANHUAI_GIVEN_UP"
MAX_DELIVERIES_PREFIX = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
REASON = "max_deliveries"
GONE_REASON = "max_deliveries_message_gone"


def given_up_subject(stream: str, durable: str) -> str:
    return f"{MAX_DELIVERIES_PREFIX}.{stream}.{durable}"


def sweeper_durable(durable: str) -> str:
    return f"{durable}-given-up"


def given_up_stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(name=GIVEN_UP_STREAM, subjects=[f"{MAX_DELIVERIES_PREFIX}.>"], storage=StorageType.FILE,
                        num_replicas=replicas, description="JetStream's notices of inputs it gave up on (max_deliver)")


async def ensure_stream(js: Any, config: StreamConfig, attempts: int = 5) -> None:
    """Create or update a stream. Asked again when the server leaves the request unanswered: a
    new clustered stream's create or update requests, sent by several components starting at once,
    are sometimes not answered (seen with nats-server 2.15.1 and three nodes)."""
    for attempt in range(1, attempts + 1):
        try:
            try:
                await js.stream_info(config.name)
                await js.update_stream(config)
            except nats.js.errors.NotFoundError:
                await js.add_stream(config)
            return
        except nats.errors.TimeoutError:
            if attempt == attempts:
                raise
            await asyncio.sleep(0.2 * attempt)


async def ensure_given_up(js: Any, stream: str, durable: str, replicas: int = 1) -> None:
    """The advisories' stream and the sweeper's durable consumer for one consumer of ours. Called
    before that consumer is created or updated, so no advisory of it can go unrecorded."""
    await ensure_stream(js, given_up_stream_config(replicas))
    name = sweeper_durable(durable)
    await js.add_consumer(GIVEN_UP_STREAM, ConsumerConfig(
        durable_name=name, name=name, filter_subject=given_up_subject(stream, durable),
        deliver_policy=DeliverPolicy.ALL, ack_policy=JsAckPolicy.EXPLICIT, ack_wait=30.0,
        max_deliver=-1,  # an advisory is never given up on itself: it waits for the database
    ))


@dataclass(frozen=True)
class Advisory:
    stream: str
    consumer: str
    sequence: int
    deliveries: int

    @classmethod
    def parse(cls, body: bytes) -> Advisory:
        data = json.loads(body)
        return cls(str(data["stream"]), str(data["consumer"]), int(data["stream_seq"]), int(data.get("deliveries", 0)))


async def fetch_given_up(js: Any, advisory: Advisory) -> Incoming | None:
    """The message JetStream gave up on, by its stream sequence (None when it is no longer stored)."""
    try:
        raw = await js.get_msg(advisory.stream, advisory.sequence)
    except nats.js.errors.NotFoundError:
        return None
    return Incoming(subject=raw.subject, body=raw.data or b"", headers=dict(raw.headers or {}), stream=advisory.stream,
                    sequence=advisory.sequence, delivered=advisory.deliveries)


def letter_for(handler: Handler, advisory: Advisory, message: Incoming | None) -> DeadLetter | EventMessage:
    """What a given-up message becomes: the dead letter it deserves, or (for a well-formed input)
    the event, which the caller dead-letters unless the service had handled it after all."""
    if message is None:
        gone = Incoming(subject="", body=b"", headers={}, stream=advisory.stream, sequence=advisory.sequence,
                        delivered=advisory.deliveries)
        return dead_letter_of(handler, gone, GONE_REASON, f"JetStream gave up after {advisory.deliveries} deliveries "
                              "and the message is no longer in its stream", None)
    return admit(handler, message)


def _given_up_detail(deliveries: int) -> str:
    return (f"JetStream gave up after {deliveries} deliveries without an ack: the service was killed or stopped "
            "while handling it each time (a crash loop), or a fault outlasted its retries. The original bytes are "
            "kept; `guanhuai dlq retry ID` sends them again.")


async def sweep(store: EventStore, handler: Handler, js: Any, bodies: Sequence[bytes]) -> tuple[int, int]:
    """Dead-letter what the advisories in ``bodies`` name; returns (dead-lettered, found handled).
    Raises when the dead letters cannot be written: the caller then acks nothing."""
    log = get_logger(consumer=handler.consumer)
    letters: list[DeadLetter] = []
    inputs: list[tuple[Incoming, EventMessage, Advisory]] = []
    for body in bodies:
        try:
            advisory = Advisory.parse(body)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("given_up_advisory_unreadable", error=type(exc).__name__)
            continue
        message = await fetch_given_up(js, advisory)
        outcome = letter_for(handler, advisory, message)
        if isinstance(outcome, DeadLetter):
            letters.append(outcome)
        else:
            assert message is not None
            inputs.append((message, outcome, advisory))
    tracks = handler.tracks_inputs
    ids = [str(event.event_id) for _, event, _ in inputs]

    def record(tx: Transaction) -> tuple[int, list[DeadLetter], set[str]]:
        handled = already_processed(tx.connection, handler.consumer, ids) if tracks and ids else set()
        written = letters + [
            dead_letter_of(handler, message, REASON, _given_up_detail(advisory.deliveries), str(event.event_id))
            for message, event, advisory in inputs if str(event.event_id) not in handled
        ]
        return record_dead_letters(tx.connection, written), written, handled

    stored, letters, handled = await store.write(record)
    for letter in letters:
        log.error("given_up_dead_lettered", reason=letter.reason, nats_stream=letter.nats_stream,
                  nats_sequence=letter.nats_sequence, event_id=letter.event_id, subject=letter.subject)
    return stored, len(handled)
