"""The fault suite's tools: a county year to publish, a load generator that keeps publishing
through faults, the faults themselves (a second SQLite writer holding the lock; the PostgreSQL
cluster that is stopped is :mod:`tests.support.postgres`), and an account of what the log and the
read models hold against what was published: "published N, recorded N, lost 0, duplicated 0"."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from services.reporting import tables as report
from shared.events import EventMessage
from shared.events.claims import ClaimKind
from shared.events.enrollment import HouseholdCategory
from shared.events.inbox import dead_letters, processed_messages
from shared.events.store import EventStore
from shared.events.producers import recorded_id
from shared.events.subjects import EVENTS_STREAM, INBOUND_STREAMS, inbound_subject
from tests.support.pipeline import Pipeline
from tests.support.programme import claim, households, medical, plan, unknown_policy_claim

YEAR = 2024


# -- what is published ---------------------------------------------------------------------------
@dataclass
class CountyYear:
    """One county's year: a subsidy plan, households, and insurer claims on some of them, in the
    order the county and the insurer send them (claims on a household follow it by a while)."""

    sends: list[tuple[str, EventMessage]]  # (producer kind, message)

    @classmethod
    def build(cls, households_count: int, claims_count: int, seed: int, chunk: int = 10) -> CountyYear:
        rng = random.Random(seed)
        regs = households(households_count, year=YEAR, seed=seed)
        claimed = rng.sample(range(households_count // 2), claims_count)
        claims_after: dict[int, list[EventMessage]] = defaultdict(list)
        for n, index in enumerate(sorted(claimed)):
            reg = regs[index]
            message = (claim(reg, ClaimKind.death, f"F{seed}-{n}") if n % 5 == 0
                       else medical(reg, f"F{seed}-{n}", expenses_fen=rng.randrange(50_000, 2_000_000)))
            claims_after[index + 3 * chunk].append(message)  # sent a few chunks after the household
        sends: list[tuple[str, EventMessage]] = [("county", plan(YEAR))]
        for index, reg in enumerate(regs):
            sends.append(("county", reg))
            sends += [("insurer", c) for c in claims_after.pop(index, [])]
        sends += [("insurer", c) for later in claims_after.values() for c in later]
        sends.append(("insurer", unknown_policy_claim(f"F{seed}-unknown", YEAR)))
        return cls(sends)

    def messages(self) -> list[EventMessage]:
        return [m for _, m in self.sends]


class LoadGenerator:
    """Publishes a county year in small chunks, the way county and insurer systems would: each
    message is published until JetStream acknowledges it (the same Nats-Msg-Id on every try, so a
    retry after a lost acknowledgement is dropped as a duplicate). Before its last part it waits
    at a gate that the test opens once the fault is injected, so the fault always lands while the
    county year is still being published."""

    def __init__(self, pipeline: Pipeline, year: CountyYear, *, chunk: int = 10, pause_s: float = 0.05,
                 gate_at: float = 0.6, gate_timeout_s: float = 180, publish_timeout_s: float = 120) -> None:
        self.pipeline, self.year = pipeline, year
        self.chunk, self.pause_s = chunk, pause_s
        self.gate_index = int(len(year.sends) * gate_at)
        self.gate = asyncio.Event()
        self.gate_timeout_s, self.publish_timeout_s = gate_timeout_s, publish_timeout_s
        self.published: list[tuple[str, EventMessage]] = []
        self.retries = 0
        self.task: asyncio.Task[int] | None = None

    def start(self) -> LoadGenerator:
        self.task = asyncio.create_task(self.run())
        return self

    async def run(self) -> int:
        sends = self.year.sends
        for start in range(0, len(sends), self.chunk):
            if start <= self.gate_index < start + self.chunk:
                await asyncio.wait_for(self.gate.wait(), self.gate_timeout_s)
            for kind, message in sends[start : start + self.chunk]:
                await self.send(kind, message)
                self.published.append((kind, message))
            await asyncio.sleep(self.pause_s)
        return len(self.published)

    async def send(self, kind: str, message: EventMessage, msg_id: str | None = None) -> None:
        deadline = time.monotonic() + self.publish_timeout_s
        body = message.model_dump_json().encode()
        while True:
            try:
                await self.pipeline.js.publish(inbound_subject(kind, message.event_type), body,
                                               headers={"Nats-Msg-Id": msg_id or str(message.event_id)}, timeout=5)
                return
            except Exception:  # noqa: BLE001 - NATS away: publish again, as a real producer does
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                await asyncio.sleep(0.2)

    async def resend(self, sends: list[tuple[str, EventMessage]], round_: int) -> int:
        """A producer that sends everything again, under new Nats-Msg-Ids (so that JetStream's
        duplicate window does not catch it and the services see every input a second time)."""
        for kind, message in sends:
            await self.send(kind, message, msg_id=f"resend-{round_}-{message.event_id}")
        return len(sends)

    async def finish(self) -> int:
        assert self.task is not None
        self.gate.set()
        return await self.task

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()


# -- faults --------------------------------------------------------------------------------------
async def wait_mid_batch(pipeline: Pipeline, component: str, at_least: int = 30, timeout: float = 120) -> bool:
    """Wait until ``component`` has work in hand: its durable consumers have delivered
    ``at_least`` messages and (best effort, for up to 3 s after that) some are unacknowledged, i.e.
    a batch is being handled right now. For the relay: the recorded-events stream is filling.
    Returns whether an unacknowledged batch was seen."""
    durables = {"enrollment": [("COUNTY", "enrollment-county-v1")], "subsidy": [("EVENTS", "subsidy-v1")],
                "claims": [("EVENTS", "claims-v1"), ("INSURER", "claims-insurer-v1")],
                "reporting": [("EVENTS", "reporting-v1")]}
    names = {"COUNTY": INBOUND_STREAMS["county"], "INSURER": INBOUND_STREAMS["insurer"], "EVENTS": EVENTS_STREAM}
    deadline = time.monotonic() + timeout
    started: float | None = None
    while time.monotonic() < deadline:
        if component == "relay":
            info = await pipeline.js.stream_info(EVENTS_STREAM)
            if info.state.messages >= at_least:
                return True
        else:
            infos = [await pipeline.js.consumer_info(names[s], d) for s, d in durables[component]]
            delivered = sum(i.delivered.stream_seq for i in infos[:1])
            if delivered >= at_least:
                started = started or time.monotonic()
                if any(i.num_ack_pending > 0 for i in infos) or time.monotonic() - started > 3:
                    return any(i.num_ack_pending > 0 for i in infos)
        await asyncio.sleep(0.02)
    raise TimeoutError(f"{component} never got to work\n{pipeline.tail_logs()}")


class SqliteLocker:
    """Another writer on the same SQLite file: a separate process that holds ``BEGIN EXCLUSIVE``
    for ``hold_s`` seconds, then commits."""

    SCRIPT = (
        "import sqlite3, sys, time\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
        "c.execute('COMMIT')\n"
        "print('released', flush=True)\n"
    )

    def __init__(self, path: Path, hold_s: float) -> None:
        self.path, self.hold_s = path, hold_s
        self.process: subprocess.Popen[str] | None = None

    async def lock(self) -> None:
        """Returns once the other writer holds the lock."""
        self.process = subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(self.path), str(self.hold_s)],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.process.stdout.readline), 60)
        assert line.strip() == "locked", f"the other writer did not get the lock: {line!r}"

    async def released(self) -> None:
        assert self.process is not None
        code = await asyncio.wait_for(asyncio.to_thread(self.process.wait), self.hold_s + 60)
        assert code == 0, "the other writer failed"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


# -- the account ---------------------------------------------------------------------------------
@dataclass
class Account:
    """What became of the published inputs. An input is *recorded* when the log holds it once and
    everything it must lead to once (a registration: one policy or rejection; a claim: one
    decision; an eligible policy: one subsidy per insured person); *lost* when any of that is
    missing; *duplicated* counts everything there more often than once."""

    published: int
    events: int = 0  # in the log
    recorded: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    def line(self, fault: str) -> str:
        return f"fault {fault}: published {self.published}, recorded {self.recorded}, lost {self.lost}, duplicated {self.duplicated}"

    def lose(self, what: str, n: int = 1) -> None:
        self.lost += n
        self.problems.append(f"lost: {what}")

    def duplicate(self, what: str, n: int = 1) -> None:
        self.duplicated += n
        self.problems.append(f"duplicated: {what}")

    def compare(self, what: str, have: int, want: int) -> None:
        if have < want:
            self.lose(f"{what} is {have}, the log says {want}", want - have)
        elif have > want:
            self.duplicate(f"{what} is {have}, the log says {want}", have - want)


INPUT_CONSUMERS = {"county": ("enrollment-county-v1",), "insurer": ("claims-insurer-v1",)}


async def account(pipeline: Pipeline, sends: list[tuple[str, EventMessage]]) -> Account:
    """Check the log, the services' inboxes, NATS and the reporting read model against what was
    published (each distinct input once, however often it was sent)."""
    inputs: dict[str, tuple[str, EventMessage]] = {}
    for kind, message in sends:
        inputs.setdefault(str(recorded_id(kind, message.event_id)), (kind, message))  # the log's id of it
    result = Account(published=len(inputs))
    store = await EventStore.open(pipeline.db_url, create=False)
    try:
        log = [e async for batch in store.read_all() for e in batch]
        with store.engine.connect() as conn:
            processed = Counter((r[0], r[1]) for r in conn.execute(
                select(processed_messages.c.consumer, processed_messages.c.message_id)))
            letters = (conn.execute(select(func.count()).select_from(dead_letters))).scalar_one()
            township_rows = (conn.execute(select(report.township_year))).mappings().all()
            checkpoint = (conn.execute(select(report.checkpoint.c.position))).scalars().all()
    finally:
        await store.close()

    result.events = len(log)
    by_id = Counter(str(e.event_id) for e in log)
    for event_id, n in by_id.items():
        if n > 1:
            result.duplicate(f"event {event_id} is in the log {n} times", n - 1)
    caused: dict[str, list[Any]] = defaultdict(list)
    for e in log:
        if e.causation_id is not None:
            caused[str(e.causation_id)].append(e)
    if letters:
        result.lose(f"{letters} inputs were dead-lettered", letters)

    policies = {str(e.causation_id): e for e in log if e.event_type == "PolicyIssued"}
    subsidy_decisions: dict[str, list[Any]] = defaultdict(list)
    for e in log:
        if e.event_type in ("SubsidyApproved", "SubsidyRejected"):
            subsidy_decisions[e.payload.policy_number].append(e)
    for event_id, (kind, message) in inputs.items():
        problems_before = len(result.problems)
        if event_id not in by_id:
            result.lose(f"{message.event_type} {event_id} is not in the log")
            continue
        for consumer in INPUT_CONSUMERS[kind]:
            if processed[(consumer, event_id)] != 1:
                result.lose(f"{consumer} has no record of handling {event_id}")
        if message.event_type == "HouseholdRegistered":
            outs = [e for e in caused[event_id] if e.event_type in ("PolicyIssued", "HouseholdRejected")]
            if len(outs) != 1:
                (result.lose if not outs else result.duplicate)(
                    f"registration {event_id} led to {len(outs)} outcomes", max(1, len(outs) - 1))
            policy = policies.get(event_id)
            if policy is not None and message.payload.category == HouseholdCategory.special_family:
                # Decided when the policy arrives, or, when it arrived before the year's plan
                # (deferred), when the plan does: either way one decision per insured person, an
                # approval until the policy's premium is covered, then premium_covered.
                number = policy.payload.policy_number
                decided = [e for e in subsidy_decisions[number] if e.event_type == "SubsidyApproved"
                           or getattr(e.payload, "reason", None) == "premium_covered"]
                others = [f"{e.event_type} {getattr(e.payload, 'reason', '')}" for e in subsidy_decisions[number]
                          if e not in decided]
                want = len(policy.payload.insured)
                if others:
                    result.lose(f"policy {number}: {others}")
                elif len(decided) != want:
                    (result.lose if len(decided) < want else result.duplicate)(
                        f"policy {number}: {len(decided)} subsidy decisions for {want} people",
                        abs(len(decided) - want))
        elif message.event_type == "ClaimReported":
            # Decided at once, or deferred (ClaimDeferred) and decided when its policy came: the
            # decision is then caused by the deferral. One still deferred is held, not lost.
            held = [str(e.event_id) for e in caused[event_id] if e.event_type == "ClaimDeferred"]
            outs = [e for e in [*caused[event_id], *(d for h in held for d in caused[h])]
                    if e.event_type in ("ClaimPaid", "ClaimRejected")]
            if len(outs) != 1 and not (held and not outs):
                (result.lose if not outs else result.duplicate)(
                    f"claim {message.payload.claim_id} was decided {len(outs)} times", max(1, len(outs) - 1))
        if len(result.problems) == problems_before:
            result.recorded += 1

    # Nothing recorded twice under other ids either.
    counts = Counter(e.event_type for e in log)
    wanted = Counter(m.event_type for _, m in inputs.values())
    for event_type in ("HouseholdRegistered", "ClaimReported", "SubsidyPlanPublished"):
        if counts[event_type] > wanted[event_type]:
            result.duplicate(f"{counts[event_type]} {event_type} in the log for {wanted[event_type]} sent",
                             counts[event_type] - wanted[event_type])
    streams = Counter(e.stream_id for e in log if e.event_type == "PolicyIssued")
    for stream, n in streams.items():
        if n > 1:
            result.duplicate(f"{n} policies in stream {stream}", n - 1)
    subsidised = Counter((e.payload.programme_year, e.payload.resident_id) for e in log if e.event_type == "SubsidyApproved")
    for person, n in subsidised.items():
        if n > 1:
            result.duplicate(f"{n} subsidies for one person in {person[0]}", n - 1)

    # Every recorded event is on NATS exactly once (the relay neither skipped nor repeated one).
    on_nats = (await pipeline.js.stream_info(EVENTS_STREAM)).state.messages
    result.compare("the recorded-events stream on NATS", on_nats, len(log))

    # The reporting read model says what the log says.
    head = log[-1].position if log else 0
    result.compare("the reporting checkpoint", checkpoint[0] if checkpoint else 0, head)
    totals = Counter[str]()
    for row in township_rows:
        for name in ("registrations", "registrations_rejected", "policies", "insured_persons", "premium_fen",
                     "subsidy_persons", "subsidy_fen", "claims_reported", "claims_paid", "claims_paid_fen",
                     "claims_rejected"):
            totals[name] += row[name]
    from_log = {
        "registrations": counts["HouseholdRegistered"],
        "registrations_rejected": counts["HouseholdRejected"],
        "policies": counts["PolicyIssued"],
        "insured_persons": sum(len(e.payload.insured) for e in log if e.event_type == "PolicyIssued"),
        "premium_fen": sum(e.payload.premium_fen for e in log if e.event_type == "PolicyIssued"),
        "subsidy_persons": counts["SubsidyApproved"],
        "subsidy_fen": sum(e.payload.amount_fen for e in log if e.event_type == "SubsidyApproved"),
        "claims_reported": counts["ClaimPaid"] + counts["ClaimRejected"],
        "claims_paid": counts["ClaimPaid"],
        "claims_paid_fen": sum(e.payload.amount_fen for e in log if e.event_type == "ClaimPaid"),
        "claims_rejected": counts["ClaimRejected"],
    }
    for name, want in from_log.items():
        result.compare(f"report_township_year.{name}", totals[name], want)
    return result


def audit_verify(db_url: str) -> str:
    """``guanhuai audit verify`` as an auditor runs it; returns its output (it must pass)."""
    done = subprocess.run([sys.executable, "-m", "guanhuai", "audit", "verify", "--db-url", db_url],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, f"audit verify failed: {done.stdout}{done.stderr}"
    return done.stdout
