"""The peer of ``guanhuai bench pipeline``: the service a team would write first with FastStream.

One FastStream app (``NatsBroker``, a durable JetStream subscriber with FastStream's defaults: a
push consumer, one handler call per message, acknowledged after the handler returns), an
SQLAlchemy ``AsyncSession`` per message on SQLite (aiosqlite; WAL and ``synchronous=FULL``, as the
event log), and a JetStream publish of the outcome after the commit. Its decision is a fair
minimal version of enrollment's: the household must not be insured already this programme year;
members already insured are left out; a household with no member left is rejected; otherwise the
household and its insured persons are inserted and a ``PolicyIssued``-like outcome is published.
No resident-ID, age or area checks, no event log, no hash chain, no inbox: it does less than
enrollment does (and nothing of subsidy's), which favours it.

Run as its own process, as our services are, by FastStream's own CLI: ``PEER_NATS_URL=... PEER_DB_PATH=...
faststream run guanhuai.bench.peer_faststream:create_app --factory``.
The bench side (:func:`run`) sends the households as ``bench pipeline`` sends them to enrollment
and takes the time from the first household published to the last outcome seen on NATS.

Lives in bench code only: it is a yardstick, not a service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from faststream import FastStream
from faststream.nats import JStream, NatsBroker
from pydantic import BaseModel
from sqlalchemy import ForeignKey, String, event, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from guanhuai.perf import cpu_seconds

IN_STREAM = "PEER_IN"
IN_SUBJECT = "peerin.county.HouseholdRegistered"
OUT_STREAM = "PEER_OUT"
OUT_PREFIX = "peerout"
DURABLE = "peer-enrollment"
NATS_URL_VAR, DB_PATH_VAR = "PEER_NATS_URL", "PEER_DB_PATH"
PREMIUM_PER_UNIT_FEN = 100_00


class MemberIn(BaseModel):
    name: str
    resident_id: str
    relation: str
    birth_date: date


class HouseholdIn(BaseModel):
    household_id: str
    programme_year: int
    township: str
    payer: str
    units: int
    members: list[MemberIn]


class Registration(BaseModel):
    event_id: uuid.UUID
    event_type: str
    occurred_at: datetime
    source: str
    correlation_id: uuid.UUID
    payload: HouseholdIn


class Outcome(BaseModel):
    event_id: uuid.UUID
    event_type: str  # PolicyIssued or HouseholdRejected
    occurred_at: datetime
    causation_id: uuid.UUID
    household_id: str
    programme_year: int
    policy_number: str | None
    insured_resident_ids: list[str]
    left_out_resident_ids: list[str]
    premium_fen: int


class Base(DeclarativeBase):
    pass


class Household(Base):
    __tablename__ = "peer_households"
    programme_year: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    policy_number: Mapped[str] = mapped_column(String(200), unique=True)
    township: Mapped[str] = mapped_column(String(200))
    premium_fen: Mapped[int]
    issued_at: Mapped[datetime]


class InsuredPerson(Base):
    __tablename__ = "peer_insured_persons"
    programme_year: Mapped[int] = mapped_column(primary_key=True)
    resident_id: Mapped[str] = mapped_column(String(18), primary_key=True)
    policy_number: Mapped[str] = mapped_column(ForeignKey("peer_households.policy_number"))
    name: Mapped[str] = mapped_column(String(100))


def build_app(nats_url: str, db_path: Path) -> FastStream:
    """The plain FastStream service: an engine, a broker and one handler."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{db_path}")

    @event.listens_for(engine.sync_engine, "connect")
    def _durable(dbapi_connection: Any, _record: Any) -> None:  # the log's durability settings
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    sessions = async_sessionmaker(engine, expire_on_commit=False)
    # FastStream's per-message lines at DEBUG (its logger shows INFO and up): our services log
    # nothing per message here either. Errors are still logged.
    broker = NatsBroker(nats_url, log_level=logging.DEBUG)
    app = FastStream(broker)

    @app.on_startup
    async def create_tables() -> None:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    @app.after_shutdown
    async def dispose() -> None:
        await engine.dispose()

    @broker.subscriber(IN_SUBJECT, stream=JStream(IN_STREAM, subjects=[f"{IN_SUBJECT.rsplit('.', 1)[0]}.>"]),
                       durable=DURABLE)
    async def enrol(msg: Registration) -> None:
        h = msg.payload
        now = datetime.now(timezone.utc)
        async with sessions() as session, session.begin():
            already = await session.get(Household, (h.programme_year, h.household_id))
            insured_before = set((await session.scalars(select(InsuredPerson.resident_id).where(
                InsuredPerson.programme_year == h.programme_year,
                InsuredPerson.resident_id.in_([m.resident_id for m in h.members])))).all())
            covered = [m for m in h.members if m.resident_id not in insured_before]
            policy_number = None
            if already is None and covered:
                policy_number = f"P{h.programme_year}-{h.household_id}"
                premium = PREMIUM_PER_UNIT_FEN * h.units
                session.add(Household(programme_year=h.programme_year, household_id=h.household_id,
                                      policy_number=policy_number, township=h.township, premium_fen=premium,
                                      issued_at=now))
                session.add_all(InsuredPerson(programme_year=h.programme_year, resident_id=m.resident_id,
                                              policy_number=policy_number, name=m.name) for m in covered)
        outcome = Outcome(
            event_id=uuid.uuid4(), event_type="PolicyIssued" if policy_number else "HouseholdRejected",
            occurred_at=now, causation_id=msg.event_id, household_id=h.household_id,
            programme_year=h.programme_year, policy_number=policy_number,
            insured_resident_ids=[m.resident_id for m in covered] if policy_number else [],
            left_out_resident_ids=sorted(insured_before),
            premium_fen=PREMIUM_PER_UNIT_FEN * h.units if policy_number else 0,
        )
        # After the commit: the outcome is published only once its rows are stored.
        await broker.publish(outcome, f"{OUT_PREFIX}.{outcome.event_type}", stream=OUT_STREAM)

    return app


# --- the bench's side ------------------------------------------------------------------------


async def _wait_ready(js: Any, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"the plain FastStream service exited during start-up; see {log}")
        try:
            await js.consumer_info(IN_STREAM, DURABLE)
            return
        except Exception:  # noqa: BLE001 - not created yet
            await asyncio.sleep(0.1)
    raise TimeoutError("the plain FastStream service did not create its consumer")


async def run(nats_url: str, bodies: Sequence[bytes], message_ids: Sequence[str], workdir: Path,
              progress: Callable[[str, int, int], None], in_flight: int = 1000,
              stall_s: float = 120.0) -> dict[str, Any]:
    """Send ``bodies`` (the households' messages, as ``bench pipeline`` sends them) to the plain
    FastStream service and wait for every outcome. Households/s from the first publish to the last
    outcome received, and how many of each outcome."""
    import nats
    from nats.js.api import StorageType, StreamConfig

    from shared.events.relay import publish_acked

    households = len(bodies)
    db_path, log = workdir / "peer.db", workdir / "peer_faststream.log"
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=OUT_STREAM, subjects=[f"{OUT_PREFIX}.>"], storage=StorageType.FILE))
    received: dict[str, int] = {}
    last = [0.0]

    async def seen(msg: Any) -> None:
        kind = msg.subject.rsplit(".", 1)[-1]
        received[kind] = received.get(kind, 0) + 1
        last[0] = time.perf_counter()

    sub = await nc.subscribe(f"{OUT_PREFIX}.>", cb=seen)
    # Started as FastStream's CLI starts an app in production.
    proc = subprocess.Popen([sys.executable, "-m", "faststream", "run", f"{__name__}:create_app", "--factory"],
                            env=dict(os.environ, **{NATS_URL_VAR: nats_url, DB_PATH_VAR: str(db_path)}),
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        await _wait_ready(js, proc, log)
        items = [(IN_SUBJECT, body, f"peer-{mid}") for body, mid in zip(bodies, message_ids, strict=True)]
        cpu_at_start = cpu_seconds(proc.pid)
        start = time.perf_counter()
        publisher = asyncio.create_task(publish_acked(nc, items, batch_size=in_flight))
        done, moved_at = 0, time.perf_counter()
        while done < households:
            await asyncio.sleep(0.25)
            if proc.poll() is not None:
                raise RuntimeError(f"the plain FastStream service exited; see {log}")
            now_done = sum(received.values())
            if now_done != done:
                done, moved_at = now_done, time.perf_counter()
            elif time.perf_counter() - moved_at > stall_s:
                raise TimeoutError(f"the plain FastStream service stalled at {done} of {households}; see {log}")
            progress("households (plain FastStream)", done, households)
        stored, duplicates = await publisher
        if (stored, duplicates) != (households, 0):
            raise RuntimeError(f"plain FastStream peer: {stored} households stored, {duplicates} duplicates of {households}")
        elapsed = last[0] - start
        cpu_at_end = cpu_seconds(proc.pid)
        await sub.unsubscribe()
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        await nc.close()
    return {
        "households": households,
        "seconds": round(elapsed, 2),
        "households_per_s": round(households / elapsed, 1),
        "outcomes": dict(sorted(received.items())),
        # The service's own CPU per household (the rest of its time it waits: fsync, NATS round trips).
        "cpu_ms_per_household": (round((cpu_at_end - cpu_at_start) * 1000 / households, 3)
                                 if cpu_at_start is not None and cpu_at_end is not None else None),
    }


def create_app() -> FastStream:
    """The factory ``faststream run --factory`` starts: where to connect, from the environment."""
    return build_app(os.environ[NATS_URL_VAR], Path(os.environ[DB_PATH_VAR]))
