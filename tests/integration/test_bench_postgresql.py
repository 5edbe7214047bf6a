"""``guanhuai bench pipeline --db-url postgresql://… --instances 2``: the households through two
instances of each service (and two relays) on a PostgreSQL database the bench creates and drops,
beside SQLite, with where the time went; and ``bench all --pg-url``. Tiny sizes: no figure is
judged, only that the runs are real and complete."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from guanhuai.bench.pipeline import POSTGRES_BACKENDS, POSTGRES_BACKGROUND, batch_timings, lock_figures
from guanhuai.bench.summary import summarise_benchmark, table
from tests.conftest import PG_SERVER

HOUSEHOLDS = 20


def _bench_databases() -> set[str]:
    with psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=5, autocommit=True) as conn:
        return {row[0] for row in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'guanhuai_bench_%'")}


@pytest.fixture
def pg_server() -> str:
    try:
        _bench_databases()
    except psycopg.Error as exc:
        pytest.skip(f"PostgreSQL at {PG_SERVER} is not available ({exc})")
    return PG_SERVER


def test_bench_pipeline_runs_two_instances_of_each_service_on_postgresql_beside_sqlite(pg_server: str, tmp_path: Path) -> None:
    before = _bench_databases()
    done = subprocess.run(
        [sys.executable, "-m", "guanhuai", "bench", "pipeline", "--households", str(HOUSEHOLDS), "--workdir", str(tmp_path),
         "--db-url", f"{pg_server}/postgres", "--instances", "2"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    pg = figures["postgresql"]
    assert pg["instances"] == pg["relays"] == 2 and pg["households"] == HOUSEHOLDS
    assert pg["postgresql_households_per_s"] > 0 and pg["sqlite_households_per_s"] > 0
    assert abs(pg["postgresql_vs_sqlite"] - pg["postgresql_households_per_s"] / pg["sqlite_households_per_s"]) < 0.01
    assert pg["database"]["server"]
    # The same households decided alike on both databases, as on the main run.
    assert pg["postgresql"]["subsidy_decisions"] == pg["sqlite"]["subsidy_decisions"] == figures["subsidy_decisions"] > 0
    # Two of every component ran on PostgreSQL; one of each on SQLite.
    # (and the database server's processes: our database's backends, the server's background ones)
    spent = pg["postgresql"]["cpu_ms_per_household"]
    assert set(spent) == {"relay-1", "relay-2", "enrollment-1", "enrollment-2", "subsidy-1", "subsidy-2", "nats-server",
                          "bench (publisher, polls)", POSTGRES_BACKENDS, POSTGRES_BACKGROUND}
    assert min(spent.values()) >= 0  # (20 households may cost a process less than one clock tick: 0)
    assert set(pg["sqlite"]["cpu_ms_per_household"]) == {"relay", "enrollment", "subsidy", "nats-server", "bench (publisher, polls)"}
    for run in ("postgresql", "sqlite"):
        batches = pg[run]["batches"]
        # Every household was handled once by enrollment, whichever instance took its batch (and the
        # subsidy plan, which comes in on the county's inbound stream too).
        assert sum(b["inputs_handled"] for label, b in batches.items() if label.startswith("enrollment")) == HOUSEHOLDS + 1
        assert any(label.startswith("subsidy") for label in batches)
        for b in batches.values():
            assert b["batches"] >= 1 and min(b[k] for k in ("decide_s", "lock_wait_s", "write_s", "commit_s")) >= 0
        lock = pg[run]["lock"]
        held = sum(b["write_s"] + b["commit_s"] for b in batches.values())
        assert lock["held_s"] == pytest.approx(held, abs=0.002) and lock["held_s"] > 0
        assert lock["ceiling_households_per_s"] == pytest.approx(HOUSEHOLDS / lock["held_s"], rel=0.01)
    assert "PostgreSQL" in done.stdout and "2 instances of each service" in done.stdout
    assert "the log's write lock held" in done.stdout
    # The bench's database is gone; nothing else of the server's was touched.
    assert _bench_databases() == before


def test_bench_pipeline_refuses_a_postgresql_server_that_does_not_answer(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "guanhuai", "bench", "pipeline", "--households", "5", "--workdir", str(tmp_path),
         "--db-url", "postgresql://postgres@127.0.0.1:1/postgres"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "bench pipeline --db-url: PostgreSQL at postgresql+psycopg://postgres@127.0.0.1:1/postgres is not reachable" in done.stderr


@pytest.mark.parametrize("given", [None, "postgresql://postgres@127.0.0.1:1/postgres"])
def test_bench_all_skips_the_postgresql_pipeline_with_a_line_saying_why(given: str | None, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "-m", "guanhuai", "bench", "all", "--only", "pipeline_postgresql", "--households", "5",
         "--out-dir", str(out), "--workdir", str(tmp_path), *(["--pg-url", given] if given else [])],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    skipped = summary["benchmarks"]["pipeline_postgresql"]["skipped"]
    if given is None:
        assert skipped == "no --pg-url given"
    else:
        assert skipped.startswith("PostgreSQL at postgresql+psycopg://postgres@127.0.0.1:1/postgres is not reachable")
    assert f"bench pipeline on PostgreSQL: skipped ({skipped})" in done.stderr
    assert f"| `bench pipeline_postgresql` | skipped: {skipped} | | | | – |" in (out / "results.md").read_text(encoding="utf-8")
    assert summary["all_met"] is True  # nothing ran, nothing failed: a skipped benchmark is not a miss


RUN = {"benchmark": "pipeline_postgresql", "households": 1000, "instances": 2, "relays": 2,
       "database": {"server": "15.20", "url": "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"},
       "postgresql_households_per_s": 900.0, "sqlite_households_per_s": 1200.0, "postgresql_vs_sqlite": 0.75,
       "targets": {}, "postgresql": {"lock": {"held_share": 0.6}}, "sqlite": {"lock": {"held_share": 0.4}}}


def test_the_summary_reports_the_postgresql_figure_beside_sqlite_without_judging_it() -> None:
    result = summarise_benchmark("pipeline_postgresql", [RUN])
    assert result["figures"] == {"postgresql_households_per_s": 900.0}
    assert result["raw_references"] == {"sqlite_households_per_s": 1200.0}
    assert result["ratios"] == {"postgresql_vs_sqlite": 0.75}
    assert result["met"] == {"postgresql_vs_sqlite": None} and result["all_met"] is True
    assert result["details"]["postgresql"] == {"lock": {"held_share": 0.6}} and result["details"]["instances"] == 2
    machine = {"date": "2026-12-08T06:00:00+08:00", "label": None, "hostname": "box", "cores": 2, "cpu": "cpu",
               "memory_gb": 4.0, "platform": "Linux", "python": "CPython 3.11", "sqlite": "3.40", "nats_server": None}
    text = table({"machine": machine, "benchmarks": {"pipeline_postgresql": result}})
    assert ("| `bench pipeline_postgresql` end to end on PostgreSQL, 1,000 households, 2 instances of each service "
            "| 900 households/s | SQLite, one instance each, same households 1,200 households/s | 0.75 |  | – |") in text


def test_batch_timings_are_summed_from_the_services_batch_done_lines(tmp_path: Path) -> None:
    log = tmp_path / "enrollment-1.log"
    lines = [
        {"event": "batch_done", "size": 10, "handled": 10, "decide_ms": 5.0, "lock_wait_ms": 1.5, "write_ms": 3.0, "commit_ms": 2.0},
        {"event": "handled", "event_id": "x"},
        {"event": "batch_done", "size": 4, "handled": 3, "decide_ms": 1.0, "lock_wait_ms": 0.5, "write_ms": 1.0, "commit_ms": 1.0},
        {"event": "batch_done", "size": 1, "handled": 0, "dead_lettered": 1},  # dead letters alone: no timings
    ]
    log.write_text("\n".join(json.dumps(line) for line in lines) + "\nnot json \"batch_done\"\n", encoding="utf-8")
    timings = batch_timings({"enrollment-1": log, "subsidy-1": tmp_path / "absent.log"})
    assert timings == {"enrollment-1": {"batches": 2, "inputs_handled": 13, "decide_s": 0.006, "lock_wait_s": 0.002,
                                        "write_s": 0.004, "commit_s": 0.003}}
    assert lock_figures(timings, households=7, seconds=0.014) == {
        "held_s": 0.007, "waited_s": 0.002, "held_share": 0.5, "held_ms_per_household": 1.0, "ceiling_households_per_s": 1000.0}
