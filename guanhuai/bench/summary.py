"""``guanhuai bench all``: the store, rebuild and pipeline benchmarks (and the pipeline on PostgreSQL
beside SQLite, given a server) in one run, summarised in
``results.json`` (the machine, and per benchmark its figures, the raw references measured in the
same run, the ratios, the targets and whether each was met) and ``results.md`` (a table).

The benchmarks themselves are run as they are (``guanhuai.bench.store`` / ``rebuild`` /
``pipeline``); this module only reads what they return."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.domain.calendar import now_cst

Progress = Callable[[str, int, int], None]
# A benchmark as run here: given the progress callback, a coroutine returning its JSON figures.
Runner = Callable[[Progress], Awaitable[dict[str, Any]]]
Execute = Callable[[Runner], dict[str, Any]]


@dataclass(frozen=True)
class Measure:
    """One line of the summary: a figure of guanhuai's, the raw reference it is compared with,
    their ratio and the target (``≥`` for a ratio, ``<`` for memory)."""

    label: str
    figure: str
    unit: str
    reference: str
    reference_label: str
    ratio: str | None
    target: str
    bound: str  # "≥" or "<"
    reference_unit: str | None = None  # when it differs from ``unit``


MEASURES: dict[str, tuple[Measure, ...]] = {
    "store": (
        Measure("append", "append_events_per_s", "ev/s", "plain_sqlite_append_per_s",
                "plain sqlite3 executemany", "append_ratio", "append_ratio", "≥"),
        Measure("replay with full decoding", "replay_events_per_s", "ev/s", "plain_sqlite_replay_per_s",
                "plain select + json.loads", "replay_ratio", "replay_ratio", "≥"),
        Measure("replay peak memory", "replay_peak_rss_mb", "MB", "plain_replay_peak_rss_mb",
                "plain replay", None, "replay_peak_rss_mb", "<"),
        # The peer library, same events, same run (guanhuai/bench/peer_eventsourcing.py).
        Measure("append vs eventsourcing", "append_events_per_s", "ev/s", "eventsourcing_append_per_s",
                "eventsourcing 9.5 (SQLite)", "append_vs_eventsourcing", "append_vs_eventsourcing", "≥"),
        Measure("replay with full decoding vs eventsourcing", "replay_events_per_s", "ev/s",
                "eventsourcing_replay_per_s", "eventsourcing 9.5 notifications to domain events",
                "replay_vs_eventsourcing", "replay_vs_eventsourcing", "≥"),
    ),
    "rebuild": (
        Measure("rebuild", "rebuild_events_per_s", "ev/s", "plain_sqlite_scan_per_s",
                "plain sqlite3 scan + json.loads", "ratio", "ratio", "≥"),
        Measure("rebuild peak memory", "rebuild_peak_rss_mb", "MB", "plain_scan_peak_rss_mb",
                "plain scan", None, "rebuild_peak_rss_mb", "<"),
    ),
    "pipeline": (
        Measure("end to end", "households_per_s", "households/s", "raw_nats_round_trip_per_s",
                "nats-py round trip (median of 3)", "ratio", "ratio", "≥", reference_unit="msg/s"),
        # The peer service, same households, same server (guanhuai/bench/peer_faststream.py).
        Measure("end to end vs plain FastStream", "households_per_s", "households/s",
                "plain_faststream_households_per_s", "plain FastStream service, a session per message",
                "faststream_ratio", "faststream_ratio", "≥"),
    ),
    # The same households on PostgreSQL (several instances of each service) beside SQLite (one
    # each), same run (guanhuai.bench.pipeline.compare_postgresql). No target: what one log takes.
    "pipeline_postgresql": (
        Measure("end to end on PostgreSQL", "postgresql_households_per_s", "households/s", "sqlite_households_per_s",
                "SQLite, one instance each, same households", "postgresql_vs_sqlite", "postgresql_vs_sqlite", "≥"),
    ),
}
PEERS = {"store": ("eventsourcing",), "pipeline": ("plain_faststream",)}
# Figures of a run kept in the summary as they are (where the time went, for the PostgreSQL run).
DETAILS = {"pipeline_postgresql": ("instances", "relays", "database", "postgresql", "sqlite")}
SIZE_KEYS = {"store": "events", "rebuild": "events", "pipeline": "households", "pipeline_postgresql": "households"}
ORDER = ("store", "rebuild", "pipeline", "pipeline_postgresql")


def _target(output: dict[str, Any], key: str) -> float | None:
    target = (output.get("targets") or {}).get(key)
    return float(target) if target is not None else None


def _met(value: float | None, bound: str, target: float | None) -> bool | None:
    if value is None or target is None:
        return None
    return value >= target if bound == "≥" else value < target


def summarise_benchmark(name: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Figures, raw references, ratios, targets and whether each target was met, from the JSON
    of one or more runs of a benchmark (several runs: the one with the median main ratio, and
    every run's JSON kept under ``runs``)."""
    measures = MEASURES[name]
    main_ratio = measures[0].ratio or ""
    ranked = sorted(runs, key=lambda r: r.get(main_ratio) or 0)
    chosen = ranked[(len(ranked) - 1) // 2]
    figures: dict[str, Any] = {}
    references: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    targets: dict[str, Any] = {}
    met: dict[str, bool | None] = {}
    for m in measures:
        figures[m.figure] = chosen.get(m.figure)
        references[m.reference] = chosen.get(m.reference)
        value = chosen.get(m.ratio) if m.ratio else chosen.get(m.figure)
        if m.ratio:
            ratios[m.ratio] = value
        target = _target(chosen, m.target)
        targets[m.target] = {"bound": m.bound, "value": target}
        met[m.target] = _met(value, m.bound, target)
    if "raw_runs_per_s" in chosen:
        references["raw_runs_per_s"] = chosen["raw_runs_per_s"]
    # The peers' own details (versions, settings, counts; or why one was skipped), as that run had them.
    peers = {name: chosen[name] for name in PEERS.get(name, ()) if name in chosen}
    details = {key: chosen[key] for key in DETAILS.get(name, ()) if key in chosen}
    return {
        "size": {SIZE_KEYS[name]: chosen.get(SIZE_KEYS[name])},
        "figures": figures,
        "raw_references": references,
        "ratios": ratios,
        "targets": targets,
        "met": met,
        # A measure without a target (the PostgreSQL figure) is reported, not judged.
        "all_met": all(met[m.target] is True for m in measures if targets[m.target]["value"] is not None),
        **({"peers": peers} if peers else {}),
        **({"details": details} if details else {}),
        "runs": list(runs),
    }


def machine(label: str | None = None) -> dict[str, Any]:
    """What the figures came from."""
    memory_gb = None
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores_usable = len(os.sched_getaffinity(0))
    except AttributeError:
        cores_usable = os.cpu_count()
    return {
        "label": label,
        "hostname": platform.node(),
        "cores": os.cpu_count(),
        "cores_usable": cores_usable,
        "cpu": cpu,
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "nats_server": _nats_server_version(),
        "date": now_cst().isoformat(timespec="seconds"),
    }


def _nats_server_version() -> str | None:
    try:
        from guanhuai.embedded import nats_server_binary

        done = subprocess.run([nats_server_binary(), "--version"], capture_output=True, text=True, timeout=10)
        return done.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _number(value: Any, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "MB":
        return f"{value:,.1f} MB"
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:,.1f} {unit}"


def table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table, with the machine and date above it."""
    m = summary["machine"]
    lines = [
        "# guanhuai benchmarks",
        "",
        f"{m['date']} (China Standard Time) on {m.get('label') or m['hostname']}: {m['cores']} cores "
        f"({m['cpu']}), {m['memory_gb']} GB memory, {m['platform']}, {m['python']}, SQLite {m['sqlite']}, "
        f"{m['nats_server'] or 'nats-server ?'}.",
        "",
        "| benchmark | guanhuai | raw reference, same run | ratio | target | met |",
        "| --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for name in ORDER:
        result = summary["benchmarks"].get(name)
        if result is None:
            continue
        if "error" in result:
            lines.append(f"| `bench {name}` | failed: {result['error']} | | | | no |")
            continue
        if "skipped" in result:
            lines.append(f"| `bench {name}` | skipped: {result['skipped']} | | | | – |")
            continue
        size_key, size = next(iter((result.get("size") or {}).items()), ("size", None))
        size_text = f"{size:,} {size_key}" if isinstance(size, int | float) else f"{size_key} not recorded"
        instances = (result.get("details") or {}).get("instances")
        if instances is not None:
            size_text += f", {instances} instances of each service"
        for m_ in MEASURES[name]:
            ratio = result["ratios"].get(m_.ratio) if m_.ratio else None
            target = result["targets"][m_.target]
            target_text = "" if target["value"] is None else (
                f"{target['bound']} {target['value']:.2f}" if m_.unit != "MB" else f"{target['bound']} {target['value']:.0f} MB")
            met = result["met"][m_.target]
            runs = len(result["runs"])
            lines.append(
                f"| `bench {name}` {m_.label}, {size_text}{f' (median of {runs} runs)' if runs > 1 else ''} "
                f"| {_number(result['figures'][m_.figure], m_.unit)} "
                f"| {m_.reference_label} {_number(result['raw_references'][m_.reference], m_.reference_unit or m_.unit)} "
                f"| {'' if ratio is None else f'{ratio:.2f}'} | {target_text} "
                f"| {'–' if met is None else ('yes' if met else 'no')} |")
    lines.append("")
    return "\n".join(lines)


def run_all(execute: Execute, *, store_events: int, batch: int, rebuild_events: int, households: int, runs: int,
            workdir: Path | None, out_dir: Path, label: str | None = None,
            only: Sequence[str] = ORDER, say: Callable[[str], None] = lambda _: None,
            pipeline_runs: int | None = None, pg_url: str | None = None, pg_instances: int = 2) -> dict[str, Any]:
    """Run the benchmarks (each ``runs`` times, the pipeline ``pipeline_runs`` times if given, through ``execute``), write ``results.json`` and
    ``results.md`` into ``out_dir`` and return the summary. A benchmark that fails is recorded
    with its error and the others still run. ``pipeline_postgresql`` runs on ``pg_url``'s server
    with ``pg_instances`` of each service; without ``pg_url``, or when the server does not answer,
    it is recorded as skipped, with the reason, and said."""
    from guanhuai.bench import pipeline, rebuild, store

    async def run_store(progress: Progress) -> dict[str, Any]:
        return (await store.run(store_events, batch, workdir, progress)).as_dict()

    runners: dict[str, Runner] = {
        "store": run_store,
        "rebuild": lambda progress: rebuild.run(rebuild_events, workdir, progress),
        "pipeline": lambda progress: pipeline.run(households, workdir, progress),
        "pipeline_postgresql": lambda progress: pipeline.compare_postgresql(
            households, pg_url or "", workdir, progress, instances=pg_instances),
    }
    summary: dict[str, Any] = {"machine": machine(label), "benchmarks": {}}
    for name in ORDER:
        if name not in only:
            continue
        if name == "pipeline_postgresql":
            reason = "no --pg-url given" if not pg_url else pipeline.postgresql_unreachable(pg_url)
            if reason is not None:
                say(f"bench pipeline on PostgreSQL: skipped ({reason})")
                summary["benchmarks"][name] = {"skipped": reason}
                continue
        outputs = []
        count = pipeline_runs if name == "pipeline" and pipeline_runs else runs
        try:
            for n in range(count):
                say(f"bench {name}: run {n + 1} of {count}")
                outputs.append(execute(runners[name]))
                say(json.dumps(outputs[-1]))
            summary["benchmarks"][name] = summarise_benchmark(name, outputs)
        except Exception as exc:  # noqa: BLE001 - record it, run the others
            summary["benchmarks"][name] = {"error": f"{type(exc).__name__}: {exc}", "runs": outputs}
    summary["all_met"] = all(b.get("all_met") is True for b in summary["benchmarks"].values() if "skipped" not in b)
    summary["command"] = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    (out_dir / "results.md").write_text(table(summary), encoding="utf-8")
    return summary
