"""The peers of the benchmarks, run at tiny sizes: the ``eventsourcing`` library beside ``bench
store`` and the plain FastStream service beside ``bench pipeline``. No figure is judged, only
that each is a real number and that the peer handled what ours handled."""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import pytest

from guanhuai.bench import peer_eventsourcing, peer_faststream, store
from guanhuai.bench.pipeline import TOWNSHIPS, peer_line
from guanhuai.embedded import NatsServer
from guanhuai.simulate import registration_messages


def _real(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _quiet(label: str, done: int, total: int) -> None:
    pass


@pytest.mark.skipif(not peer_eventsourcing.available(), reason=peer_eventsourcing.skipped_reason())
async def test_bench_store_runs_the_eventsourcing_library_on_the_same_events(tmp_path: Path) -> None:
    d = (await store.run(300, 100, tmp_path, _quiet, replay_rounds=2)).as_dict()
    for key in ("eventsourcing_append_per_s", "eventsourcing_replay_per_s", "append_vs_eventsourcing",
                "replay_vs_eventsourcing"):
        assert _real(d[key]), (key, d[key])
    peer = d["eventsourcing"]
    # Every event ours appended, the peer appended, and every one came back in each replay.
    assert peer["events"] == peer["replayed"] == d["events"] == 300
    assert len(peer["replay_rounds_per_s"]) == len(d["replay_rounds"]) == 2
    assert peer["version"].startswith("9.5") and peer["batch_size"] == 100
    assert peer["database"]["journal_mode"] == "wal" and peer["database"]["synchronous"] == "FULL"
    assert abs(d["append_vs_eventsourcing"] - d["append_events_per_s"] / d["eventsourcing_append_per_s"]) < 0.01
    assert d["targets"]["append_vs_eventsourcing"] == 1.0 and d["targets"]["replay_vs_eventsourcing"] == 1.5
    lines = store.peer_lines(d)
    assert len(lines) == 2 and "eventsourcing" in lines[0] and f"{d['append_vs_eventsourcing']:.2f}" in lines[0]


async def test_without_the_library_bench_store_says_the_peer_was_skipped_and_how_to_install_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_eventsourcing, "available", lambda: False)
    d = (await store.run(200, 100, tmp_path, _quiet, replay_rounds=1)).as_dict()
    assert d["append_vs_eventsourcing"] is None and d["eventsourcing_replay_per_s"] is None
    assert _real(d["append_ratio"]) and _real(d["replay_ratio"])  # ours still measured
    [line] = store.peer_lines(d)
    assert "skipped" in line and "pip install -e '.[bench]'" in line


async def test_the_plain_faststream_peer_decides_every_household_it_is_sent(tmp_path: Path) -> None:
    regs = list(registration_messages(random.Random(2023), 20, year=2023, townships=TOWNSHIPS, source="bench-county"))
    with NatsServer(tmp_path / "nats") as server:
        peer = await peer_faststream.run(server.url, [r.model_dump_json().encode() for r in regs],
                                         [str(r.event_id) for r in regs], tmp_path, _quiet, stall_s=60)
    assert peer["households"] == 20 and _real(peer["households_per_s"]) and peer["seconds"] > 0
    assert peer["cpu_ms_per_household"] >= 0  # (20 households may take less than a clock tick)
    # One outcome per household, as enrollment publishes one; each policy's rows are in its database.
    assert sum(peer["outcomes"].values()) == 20
    with sqlite3.connect(tmp_path / "peer.db") as db:
        policies = db.execute("SELECT count(*) FROM peer_households").fetchone()[0]
        persons = db.execute("SELECT count(*) FROM peer_insured_persons").fetchone()[0]
    assert policies == peer["outcomes"].get("PolicyIssued", 0) > 0
    assert persons >= policies
    figures = {"households_per_s": 2 * peer["households_per_s"], "plain_faststream": peer,
               "faststream_ratio": 2.0, "targets": {"faststream_ratio": 3.0}}
    assert "ratio 2.00 (target ≥ 3.00)" in peer_line(figures)
