"""``guanhuai bench all`` writes one summary of the three benchmarks (run here at tiny sizes: no
figure is judged, only what is written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from guanhuai.bench import peer_eventsourcing
from guanhuai.bench.summary import MEASURES, summarise_benchmark, table

STORE_RUN = {"benchmark": "store", "events": 1000, "append_events_per_s": 800, "plain_sqlite_append_per_s": 1000,
             "append_ratio": 0.8, "replay_events_per_s": 500, "plain_sqlite_replay_per_s": 1000, "replay_ratio": 0.5,
             "replay_peak_rss_mb": 250.0, "plain_replay_peak_rss_mb": 90.0,
             "eventsourcing_append_per_s": 700, "append_vs_eventsourcing": 1.143,
             "eventsourcing_replay_per_s": 400, "replay_vs_eventsourcing": 1.25,
             "eventsourcing": {"version": "9.5.6", "events": 1000},
             "targets": {"append_ratio": 0.5, "replay_ratio": 0.6, "replay_peak_rss_mb": 200,
                         "append_vs_eventsourcing": 1.0, "replay_vs_eventsourcing": 1.5}}


def test_bench_all_writes_the_figures_raw_references_and_ratios_of_all_three_benchmarks(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    done = subprocess.run(
        [sys.executable, "-m", "guanhuai", "bench", "all", "--store-events", "300", "--rebuild-events", "300",
         "--households", "20", "--pipeline-runs", "2", "--out-dir", str(out), "--workdir", str(tmp_path), "--machine", "test box"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1])["results"] == str(out / "results.json")

    summary = json.loads((out / "results.json").read_text(encoding="utf-8"))
    machine = summary["machine"]
    assert machine["label"] == "test box" and machine["cores"] >= 1 and machine["memory_gb"] > 0
    assert machine["python"].endswith(sys.version.split()[0]) and machine["platform"]
    assert machine["date"].endswith("+08:00")  # China Standard Time
    assert set(summary["benchmarks"]) == {"store", "rebuild", "pipeline", "pipeline_postgresql"}
    # Without --pg-url the PostgreSQL pipeline is skipped, and says so (tests/integration/test_bench_postgresql.py runs it).
    assert summary["benchmarks"].pop("pipeline_postgresql") == {"skipped": "no --pg-url given"}
    sizes = {"store": {"events": 300}, "rebuild": {"events": 300}, "pipeline": {"households": 20}}
    for name, result in summary["benchmarks"].items():
        assert result["size"] == sizes[name]
        assert len(result["runs"]) == (2 if name == "pipeline" else 1)  # --pipeline-runs 2
        assert {run["benchmark"] for run in result["runs"]} == {name}
        for measure in MEASURES[name]:
            if measure.reference.startswith("eventsourcing") and not peer_eventsourcing.available():
                continue  # the bench-only extra is not installed: that peer was skipped
            assert result["figures"][measure.figure] > 0
            assert result["raw_references"][measure.reference] > 0
            assert result["targets"][measure.target]["value"] > 0
            assert isinstance(result["met"][measure.target], bool)
            if measure.ratio:
                assert result["ratios"][measure.ratio] in {run[measure.ratio] for run in result["runs"]}  # the median run's
                assert result["ratios"][measure.ratio] > 0
    assert len(summary["benchmarks"]["pipeline"]["raw_references"]["raw_runs_per_s"]) == 3
    pipeline_run = summary["benchmarks"]["pipeline"]["runs"][0]
    floor = pipeline_run["plain_sqlite_inserts"]
    # 20 households: their registrations, policies and subsidies, inbox rows, insured persons...
    assert floor["rows"] > 20 * 4 and floor["cpu_us_per_household"] > 0 and floor["wall_us_per_household"] > 0
    spent = pipeline_run["cpu_ms_per_household"]
    assert set(spent) == {"relay", "enrollment", "subsidy", "nats-server", "bench (publisher, polls)"}
    # (20 households may cost a component less than one clock tick of CPU.)
    assert all(ms >= 0 for ms in spent.values()) and sum(spent.values()) > 0
    allowed = pipeline_run["cores"] * 1000 / (0.3 * pipeline_run["raw_nats_round_trip_per_s"])
    assert abs(pipeline_run["cpu_ms_per_household_at_target"] - allowed) < 0.002
    moved = pipeline_run["nats_floor"]
    # Each household is sent once and delivered to enrollment once; the relay puts its registration,
    # its outcome and any subsidy decisions on NATS too; subsidy is delivered the outcomes it reads.
    assert moved["deliveries_per_household"] >= 1 + 1 / 20 and moved["publishes_per_household"] >= 3
    assert set(moved["per_message"]) == set(moved["cpu_ms_per_household"]) == {"nats_py", "ours"}
    for way, cost in moved["per_message"].items():
        # (the server's share of 20 messages may be under one clock tick of /proc: 0)
        assert cost["publish_client_us"] > 0 and cost["pull_ack_client_us"] > 0 and min(cost.values()) >= 0
        expected = (moved["publishes_per_household"] * (cost["publish_client_us"] + cost["publish_server_us"])
                    + moved["deliveries_per_household"] * (cost["pull_ack_client_us"] + cost["pull_ack_server_us"])) / 1000
        assert abs(moved["cpu_ms_per_household"][way] - expected) < 0.01

    markdown = (out / "results.md").read_text(encoding="utf-8")
    assert "test box" in markdown and "| benchmark | guanhuai | raw reference, same run | ratio | target | met |" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| `bench ")]
    assert len(rows) == sum(len(m) for m in MEASURES.values())
    for name in ("store", "rebuild", "pipeline"):
        ratio = summary["benchmarks"][name]["ratios"]
        first = next(row for row in rows if row.startswith(f"| `bench {name}`"))
        assert f"{next(iter(ratio.values())):.2f}" in first
    assert any("plain sqlite3 executemany" in row for row in rows)
    assert any("nats-py round trip" in row and "msg/s" in row for row in rows)


def test_a_target_is_met_when_a_ratio_reaches_it_and_when_memory_stays_below_it() -> None:
    result = summarise_benchmark("store", [STORE_RUN])
    assert result["met"] == {"append_ratio": True, "replay_ratio": False, "replay_peak_rss_mb": False,
                             "append_vs_eventsourcing": True, "replay_vs_eventsourcing": False}
    assert result["all_met"] is False
    assert result["raw_references"]["plain_sqlite_append_per_s"] == 1000
    assert result["raw_references"]["eventsourcing_append_per_s"] == 700
    assert result["ratios"]["append_vs_eventsourcing"] == 1.143
    assert result["peers"] == {"eventsourcing": {"version": "9.5.6", "events": 1000}}
    assert result["targets"]["replay_peak_rss_mb"] == {"bound": "<", "value": 200.0}


def test_with_several_runs_the_summary_takes_the_run_with_the_median_ratio_and_keeps_them_all() -> None:
    runs = [dict(STORE_RUN, append_ratio=r, append_events_per_s=int(r * 1000)) for r in (0.9, 0.4, 0.6)]
    result = summarise_benchmark("store", runs)
    assert result["ratios"]["append_ratio"] == 0.6 and result["figures"]["append_events_per_s"] == 600
    assert result["runs"] == runs


MACHINE = {"date": "2026-11-25T10:00:00+08:00", "label": None, "hostname": "box", "cores": 2, "cpu": "cpu",
           "memory_gb": 4.0, "platform": "Linux", "python": "CPython 3.11", "sqlite": "3.40", "nats_server": None}


def test_the_table_says_which_benchmark_failed() -> None:
    summary = {"machine": MACHINE,
               "benchmarks": {"store": summarise_benchmark("store", [STORE_RUN]),
                              "pipeline": {"error": "RuntimeError: a service exited", "runs": []}}}
    text = table(summary)
    assert "| `bench pipeline` | failed: RuntimeError: a service exited | | | | no |" in text
    assert "| `bench store` append, 1,000 events | 800 ev/s | plain sqlite3 executemany 1,000 ev/s | 0.80 | ≥ 0.50 | yes |" in text


def test_the_table_of_a_run_that_lacks_its_size_says_so_instead_of_failing() -> None:
    run = {k: v for k, v in STORE_RUN.items() if k != "events"}
    text = table({"machine": MACHINE, "benchmarks": {"store": summarise_benchmark("store", [run])}})
    assert "| `bench store` append, events not recorded | 800 ev/s |" in text


async def test_the_pipeline_bench_counts_outcomes_as_the_log_grows(tmp_path: Path) -> None:
    # The bench polls the log while the pipeline runs; each poll counts only the rows added since.
    from guanhuai.bench.pipeline import _Progress, log_reader
    from shared.events import EventMessage
    from shared.events.enrollment import HouseholdRejected, Payer
    from shared.events.store import EventStore
    from tests.support.events import household

    def rejected(hid: str) -> EventMessage:
        return EventMessage.new(HouseholdRejected(household_id=hid, programme_year=2023, township="350421",
                                                  payer=Payer.government, reasons=["no_eligible_member"]), source="enrollment")

    store = await EventStore.open(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    reader = log_reader(tmp_path / "log.db")
    try:
        progress = _Progress(reader)
        assert await progress.poll() == (0, 0)
        await store.append("household-H1", [household("H1"), rejected("H1")])
        await store.append("household-H2", [household("H2")])
        assert await progress.poll() == (1, 3)
        assert await progress.poll() == (1, 3)  # nothing new: nothing counted twice
        await store.append("household-H3", [household("H3"), rejected("H3"), rejected("H3b")])
        assert await progress.poll() == (3, 6)
    finally:
        reader.dispose()
        await store.close()
