"""``guanhuai bench store``: append and replay through the event log, against plain sqlite3.

Both sides start from the same events in memory and end with the same rows committed in a table
of the same shape (same indexes and triggers, WAL, ``synchronous=FULL``, one transaction per
batch). The log's side includes what the system of record must do: serialise payloads, check
stream versions and duplicate ids, assign positions and chain hashes. Replay: the log decodes
every row into validated event models; plain sqlite3 selects and ``json.loads`` the payload.

The two replays take turns, a few rounds of each (ours then plain, plain then ours, ...): on a
shared machine the speed of the same work drifts by a third within minutes, and a plain replay
measured minutes after ours compared the drift as much as the code. The replay ratio is the median
of the rounds' ratios; the rates printed are the medians of each side's rounds.

The peer, in the same run on the same events: the ``eventsourcing`` library on its SQLite module
(:mod:`guanhuai.bench.peer_eventsourcing`: append in batches of the same size, taking turns with
ours batch by batch; replay of every notification mapped to its domain event objects, a third
side in every replay round). Without the library (a bench-only extra) the peer is skipped and the
figures say so.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from guanhuai.bench import peer_eventsourcing
from guanhuai.bench.reference import plain_database, plain_scan
from guanhuai.perf import bulk_gc, peak_rss_mb, reset_peak_rss
from guanhuai.simulate import Area, registration_messages
from shared.events.base import EventMessage
from shared.events.claims import ClaimKind, ClaimReported
from shared.events.enrollment import HouseholdRegistered
from services.enrollment.decider import EnrollmentState, decide, evolve
from shared.events.store import EventStore, StreamAppend
from shared.events.subsidy import SubsidyApproved

TOWNSHIPS = [Area(f"town{i:02d}", f"3504{i:02d}") for i in range(1, 11)]
REPLAY_ROUNDS = 3


@dataclass
class StoreFigures:
    events: int
    append_per_s: float
    plain_append_per_s: float
    replay_per_s: float
    plain_replay_per_s: float
    replay_peak_mb: float
    plain_replay_peak_mb: float
    replay_rounds: list[tuple[float, float]]  # (ours, plain) events/s, in the order run
    peer: dict[str, Any] | None = None  # the eventsourcing library's figures, or why it was skipped
    peer_replay_rounds: list[float] | None = None  # its events/s in the same rounds

    def as_dict(self) -> dict[str, Any]:
        return {
            "benchmark": "store",
            "events": self.events,
            "append_events_per_s": round(self.append_per_s),
            "plain_sqlite_append_per_s": round(self.plain_append_per_s),
            "append_ratio": round(self.append_per_s / self.plain_append_per_s, 3),
            "replay_events_per_s": round(self.replay_per_s),
            "plain_sqlite_replay_per_s": round(self.plain_replay_per_s),
            # The median of the rounds' own ratios: each compares two replays run back to back.
            "replay_ratio": round(statistics.median(ours / plain for ours, plain in self.replay_rounds), 3),
            "replay_peak_rss_mb": round(self.replay_peak_mb, 1),
            "plain_replay_peak_rss_mb": round(self.plain_replay_peak_mb, 1),
            "replay_rounds": [{"replay_events_per_s": round(ours), "plain_sqlite_replay_per_s": round(plain),
                               "ratio": round(ours / plain, 3)} for ours, plain in self.replay_rounds],
            **self._peer_fields(),
            "targets": {"append_ratio": 0.5, "replay_ratio": 0.6, "replay_peak_rss_mb": 200,
                        "append_vs_eventsourcing": 1.0, "replay_vs_eventsourcing": 1.5},
        }

    def _peer_fields(self) -> dict[str, Any]:
        """The peer's rates and ours over theirs (the replay's: the median of the rounds' own ratios),
        or None for each when it was skipped."""
        peer = self.peer or {"skipped": peer_eventsourcing.skipped_reason()}
        if "skipped" in peer or not self.peer_replay_rounds:
            return {"eventsourcing_append_per_s": None, "eventsourcing_replay_per_s": None,
                    "append_vs_eventsourcing": None, "replay_vs_eventsourcing": None, "eventsourcing": peer}
        theirs = self.peer_replay_rounds
        return {
            "eventsourcing_append_per_s": round(peer["append_per_s"]),
            "eventsourcing_replay_per_s": round(statistics.median(theirs)),
            "append_vs_eventsourcing": round(self.append_per_s / peer["append_per_s"], 3),
            "replay_vs_eventsourcing": round(statistics.median(
                ours / t for (ours, _), t in zip(self.replay_rounds, theirs, strict=True)), 3),
            "eventsourcing": {**{k: v for k, v in peer.items() if k != "append_per_s"},
                              "replay_rounds_per_s": [round(t) for t in theirs]},
        }


def household_streams(rng: random.Random, year: int) -> Iterator[tuple[str, list[EventMessage]]]:
    """A household's stream as the pipeline writes it: the registration, its policy (or
    rejection), a subsidy approval per member for priority households, and a claim now and then."""
    state = EnrollmentState()
    for n, reg in enumerate(registration_messages(rng, 10**9, year=year, townships=TOWNSHIPS)):
        if n % 10_000 == 0:
            state = EnrollmentState()  # bounded memory: the benchmark measures the log, not the generator
        payload = reg.payload
        assert isinstance(payload, HouseholdRegistered)
        outcome = decide(payload, state)
        evolve(state, outcome)
        out = [reg, EventMessage.new(outcome, source="enrollment", occurred_at=reg.occurred_at,
                                     correlation_id=reg.correlation_id, causation_id=reg.event_id)]
        if payload.payer == "government":
            for m in payload.members:
                sub = SubsidyApproved(
                    plan_id=f"plan-{year}", programme_year=year, line="special", policy_number=f"P{payload.household_id}",
                    township=payload.township, resident_id=m.resident_id, amount_fen=4000,
                )
                out.append(EventMessage.new(sub, source="subsidy", correlation_id=reg.correlation_id, causation_id=reg.event_id))
        if rng.random() < 0.1:
            claim = ClaimReported(
                claim_id=f"C{payload.household_id}", policy_number=f"P{payload.household_id}",
                resident_id=payload.members[0].resident_id, accident_date=date(year, 6, 1), reported_on=date(year, 6, 3),
                kind=ClaimKind.medical, expenses_fen=500_000, social_insurance_paid_fen=200_000, deductible_fen=10_000,
                payment_ratio="0.8",
            )
            out.append(EventMessage.new(claim, source="insurer"))
        yield f"household-{payload.household_id}", out


def batches(total: int, batch_size: int, seed: int = 7) -> Iterator[list[StreamAppend]]:
    rng = random.Random(seed)
    streams = household_streams(rng, 2023)
    made = 0
    while made < total:
        batch, size = [], 0
        while size < batch_size and made + size < total:
            stream_id, evs = next(streams)
            evs = evs[: total - made - size]
            batch.append(StreamAppend(stream_id, evs, 0))
            size += len(evs)
        made += size
        yield batch


def _plain_rows(batch: list[StreamAppend], start: int) -> list[tuple[Any, ...]]:
    rows = []
    position = start
    for item in batch:
        for version, ev in enumerate(item.events, start=1):
            position += 1
            stamp = ev.occurred_at.isoformat()
            rows.append((
                position, str(ev.event_id), item.stream_id, version, ev.event_type, ev.schema_version, stamp, stamp,
                ev.source, str(ev.correlation_id), None, json.dumps(ev.payload.model_dump(mode="json"), ensure_ascii=False),
                "0" * 64, "0" * 64,
            ))
    return rows


async def run(total: int, batch_size: int, workdir: Path | None, progress: Callable[[str, int, int], None],
              replay_rounds: int = REPLAY_ROUNDS) -> StoreFigures:
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        db = Path(tmp) / "log.db"
        store = await EventStore.open(f"sqlite+aiosqlite:///{db}")
        peer = peer_eventsourcing.Peer.open(Path(tmp) / "eventsourcing.db") if peer_eventsourcing.available() else None
        try:
            # Ours and the peer take turns batch by batch (each first in every other batch), so that
            # the machine's drift over the run weighs on both appends alike.
            append_s, peer_s, done, peer_done = 0.0, 0.0, 0, 0
            for n, batch in enumerate(batches(total, batch_size)):
                if peer is not None and n % 2:
                    peer_done, peer_s = _peer_append(peer, batch, peer_done, peer_s)
                t0 = time.perf_counter()
                # Timed from the appends' making: a StreamAppend serialises its events when it is made.
                await store.append_streams([StreamAppend(item.stream_id, item.events, item.expected_version) for item in batch])
                append_s += time.perf_counter() - t0
                done += sum(len(b.events) for b in batch)
                if peer is not None and not n % 2:
                    peer_done, peer_s = _peer_append(peer, batch, peer_done, peer_s)
                progress("append (guanhuai, eventsourcing)" if peer else "append (guanhuai)", done, total)
            peer_info: dict[str, Any] = {"skipped": peer_eventsourcing.skipped_reason()} if peer is None else {
                "version": peer_eventsourcing.version(), "events": peer_done, "append_per_s": peer_done / peer_s,
                "batch_size": batch_size, "database": peer.settings()}

            # The same table, indexes and triggers, copied from the log's own schema.
            ddl = [r[0] for r in sqlite3.connect(db).execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL")]
            conn = plain_database(Path(tmp) / "plain.db", ddl)
            try:
                insert = "INSERT INTO events VALUES (" + ",".join("?" * 14) + ")"
                plain_s, done = 0.0, 0
                for batch in batches(total, batch_size):
                    rows = _plain_rows(batch, done)
                    t0 = time.perf_counter()
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(insert, rows)
                    conn.execute("COMMIT")
                    plain_s += time.perf_counter() - t0
                    done += len(rows)
                    progress("append (plain sqlite3)", done, total)

                rounds, peak, plain_peak, peer_rounds = await _replay_rounds(
                    store, conn, total, replay_rounds, progress, peer, peer_info)
            finally:
                conn.close()
        finally:
            if peer is not None:
                peer.close()
            await store.close()
        return StoreFigures(total, total / append_s, total / plain_s, statistics.median(r[0] for r in rounds),
                            statistics.median(r[1] for r in rounds), peak, plain_peak, rounds, peer_info,
                            peer_rounds if peer is not None else None)


def _peer_append(peer: peer_eventsourcing.Peer, batch: list[StreamAppend], done: int, seconds: float) -> tuple[int, float]:
    """One batch of the same events through the eventsourcing library: events appended and seconds
    so far. Timed from its events' making from ours, as ours is timed from the appends' making."""
    t0 = time.perf_counter()
    done += peer.append((item.stream_id, item.events) for item in batch)
    return done, seconds + time.perf_counter() - t0


async def _replay_rounds(store: EventStore, conn: sqlite3.Connection, total: int, count: int,
                         progress: Callable[[str, int, int], None], peer: peer_eventsourcing.Peer | None = None,
                         peer_info: dict[str, Any] | None = None,
                         ) -> tuple[list[tuple[float, float]], float, float, list[float]]:
    """``count`` rounds of one replay of each side: (ours, plain) events/s per round, each side's
    peak RSS, and the peer's events/s per round (when there is one; its peak RSS goes into
    ``peer_info``). Ours goes first in odd rounds, last in even ones (the peer the other way
    round, plain sqlite3 in the middle), so that a steady drift of the machine's speed favours
    none; all run with the same collector settings."""
    rounds, peak, plain_peak, peer_rounds = [], 0.0, 0.0, []
    for n in range(1, count + 1):
        def plain() -> tuple[int, float, float]:
            with bulk_gc():
                return plain_scan(conn, total, progress, f"replay {n}/{count} (plain sqlite3)")

        def peer_replay() -> None:
            if peer is None or peer_info is None:
                return
            reset_peak_rss()
            with bulk_gc():
                replayed, seconds = peer.replay(total, progress, f"replay {n}/{count} (eventsourcing, decoded)")
            if replayed != total:
                raise RuntimeError(f"eventsourcing replayed {replayed} events, expected {total}")
            peer_rounds.append(replayed / seconds)
            peer_info["replayed"] = replayed
            peer_info["replay_peak_rss_mb"] = round(max(peer_info.get("replay_peak_rss_mb", 0.0), peak_rss_mb()), 1)

        ours_label = f"replay {n}/{count} (guanhuai, decoded)"
        if n % 2:
            ours, theirs = await _replay(store, total, progress, ours_label), plain()
            peer_replay()
        else:
            peer_replay()
            theirs = plain()
            ours = await _replay(store, total, progress, ours_label)
        if ours[0] != total or theirs[0] != total:
            raise RuntimeError(f"replayed {ours[0]} and {theirs[0]} events, expected {total}")
        rounds.append((ours[0] / ours[1], theirs[0] / theirs[1]))
        peak, plain_peak = max(peak, ours[2]), max(plain_peak, theirs[2])
    return rounds, peak, plain_peak, peer_rounds


async def _replay(store: EventStore, total: int, progress: Callable[[str, int, int], None],
                  label: str) -> tuple[int, float, float]:
    reset_peak_rss()
    n = 0
    with bulk_gc():
        t0 = time.perf_counter()
        async for batch in store.read_all(batch_size=2000):
            n += len(batch)
            progress(label, n, total)
        elapsed = time.perf_counter() - t0
    return n, elapsed, peak_rss_mb()


def peer_lines(d: dict[str, Any]) -> list[str]:
    """What ``bench store`` prints of the peer: both sides' rates and ours over theirs against the
    targets, or the line saying it was skipped and how to install it."""
    peer = d.get("eventsourcing") or {}
    if d.get("append_vs_eventsourcing") is None:
        return [peer.get("skipped") or peer_eventsourcing.skipped_reason()]
    targets = d["targets"]
    return [
        f"append vs eventsourcing {peer.get('version')} (SQLite, {peer['database']['journal_mode']}, "
        f"synchronous={peer['database']['synchronous']}):  guanhuai {d['append_events_per_s']:>9,} ev/s   "
        f"eventsourcing {d['eventsourcing_append_per_s']:>9,} ev/s   ratio {d['append_vs_eventsourcing']:.2f} "
        f"(target ≥ {targets['append_vs_eventsourcing']:.2f})",
        f"replay with decoding vs eventsourcing (median):  guanhuai {d['replay_events_per_s']:>9,} ev/s   "
        f"eventsourcing {d['eventsourcing_replay_per_s']:>9,} ev/s   ratio {d['replay_vs_eventsourcing']:.2f} "
        f"(target ≥ {targets['replay_vs_eventsourcing']:.2f})",
    ]
