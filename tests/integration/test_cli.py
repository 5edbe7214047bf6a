"""The guanhuai command as an operator or auditor runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

from shared.events.store import EventStore
from tests.support.events import household, target

GUANHUAI = [sys.executable, "-m", "guanhuai"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*GUANHUAI, *args], capture_output=True, text=True, timeout=120)


def test_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("schema", "audit", "bench", "targets"):
        assert command in result.stdout


def test_schema_export_writes_one_json_schema_per_event_type(tmp_path: Path) -> None:
    result = run("schema", "export", str(tmp_path))
    assert result.returncode == 0, result.stderr
    names = {p.stem for p in tmp_path.glob("*.json")}
    assert {"HouseholdRegistered", "PolicyIssued", "SubsidyApproved", "ClaimPaid"} <= names
    schema = json.loads((tmp_path / "PolicyIssued.json").read_text(encoding="utf-8"))
    assert schema["properties"]["event_type"]["const"] == "PolicyIssued"
    assert "premium_fen" in schema["properties"]["payload"]["properties"]


async def test_audit_verify_passes_then_names_the_altered_position(db_url: str) -> None:
    store = await EventStore.open(db_url)
    await store.append("s", [target(f"t{n}") for n in range(3)] + [household("H1")])
    ok = run("audit", "verify", "--db-url", db_url)
    assert ok.returncode == 0, ok.stderr
    assert "4 events" in ok.stdout

    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.execute(text("DROP TRIGGER events_no_update"))
        else:
            conn.execute(text("DROP TRIGGER events_append_only ON events"))
        conn.execute(text("UPDATE events SET source = 'forged' WHERE position = 2"))
    await store.close()
    bad = run("audit", "verify", "--db-url", db_url)
    assert bad.returncode == 1
    assert json.loads(bad.stdout.strip().splitlines()[-1])["first_bad_position"] == 2
    assert "position 2" in bad.stderr


def test_store_benchmark_prints_its_figures_as_a_last_json_line(tmp_path: Path) -> None:
    result = run("bench", "store", "--events", "3000", "--batch", "500", "--workdir", str(tmp_path), "--replay-rounds", "3")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["events"] == 3000
    for key in ("append_events_per_s", "plain_sqlite_append_per_s", "append_ratio", "replay_events_per_s",
                "plain_sqlite_replay_per_s", "replay_ratio", "replay_peak_rss_mb"):
        assert figures[key] > 0
    # Three rounds of one replay each; the ratio is the median of the rounds' ratios, the rates the
    # medians of each side's.
    rounds = figures["replay_rounds"]
    assert len(rounds) == 3 and "replay round 3:" in result.stdout
    assert figures["replay_ratio"] == sorted(r["ratio"] for r in rounds)[1]
    assert figures["replay_events_per_s"] == sorted(r["replay_events_per_s"] for r in rounds)[1]
    assert figures["plain_sqlite_replay_per_s"] == sorted(r["plain_sqlite_replay_per_s"] for r in rounds)[1]
