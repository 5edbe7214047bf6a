"""The operator's and auditor's commands against a running system: publish (JSON lines and a
household roster), status, dead letters, replay and config."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from guanhuai.rosters import COLUMNS, TEMPLATE_ROWS, write_template
from guanhuai.stack import Stack, connect
from shared.events.store import EventStore
from tests.support.programme import households


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Stack]:
    stack = Stack(tmp_path, f"sqlite:///{tmp_path / 'guanhuai.db'}").start(
        ("relay", "enrollment", "subsidy", "claims", "reporting"))
    nc = await connect(stack.nats_url or "")
    await stack.wait_ready(nc.jetstream())
    await nc.close()
    yield stack
    stack.stop()


def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GUANHUAI_DATA_DIR=str(stack.data_dir), GUANHUAI_DB_URL=stack.db_url,
               GUANHUAI_NATS_URL=stack.nats_url or "")
    return subprocess.run([sys.executable, "-m", "guanhuai", *args], capture_output=True, text=True, timeout=120, env=env)


async def wait_until_caught_up(stack: Stack) -> None:
    import asyncio

    nc = await connect(stack.nats_url or "")
    store = await EventStore.open(stack.db_url, create=False)
    try:
        for _ in range(300):
            done, _lag = await stack.caught_up(nc.jetstream(), store)
            if done:
                return
            await asyncio.sleep(0.2)
        raise TimeoutError("not caught up")
    finally:
        await nc.close()
        await store.close()


def roster_with_a_bad_row(path: Path) -> None:
    write_template(path)  # the headings; the example household from the template's 示例 sheet
    rows = [*csv.reader(path.open(encoding="utf-8-sig")), *TEMPLATE_ROWS]
    bad = list(rows[1])
    bad[1], bad[11] = "CG-0002", "123"  # another household whose ID number is too short
    rows.append(bad)
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows(rows)


async def test_publishes_a_roster_reports_bad_rows_and_never_publishes_twice(running: Stack, tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster_with_a_bad_row(roster)
    first = cli(running, "publish", str(roster), "--source", "chengguan-office")
    assert first.returncode == 1
    assert "第 4 行 身份证号：须为 18 位身份证号" in first.stderr
    assert "1 published, 0 already published, 1 refused" in first.stdout
    again = cli(running, "publish", str(roster), "--source", "chengguan-office")
    assert "0 published, 1 already published" in again.stdout
    await wait_until_caught_up(running)
    report = json.loads(cli(running, "report", "--year", "2024", "--format", "json").stdout)
    assert report["total"]["policies"] == 1 and report["total"]["insured_persons"] == 2
    assert list(COLUMNS)[0] == "投保年度"


async def test_status_dead_letters_replay_and_config(running: Stack, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    good = households(3, seed=77)
    bad = json.loads(good[0].model_dump_json())
    bad["event_id"] = "not-a-uuid"
    events.write_text("\n".join([good[1].model_dump_json(), "{not json", json.dumps(bad), good[2].model_dump_json()]) + "\n")
    published = cli(running, "publish", str(events), "--source", "county-system")
    assert "line 2" in published.stderr and "line 3" in published.stderr and "event_id" in published.stderr
    assert "2 published" in published.stdout

    # A message the service refuses (sent straight to NATS, as a misbehaving system would).
    nc = await connect(running.nats_url or "")
    leaked_id = good[0].payload.members[0].resident_id
    await nc.jetstream().publish("guanhuai.in.county.HouseholdRegistered",
                                 f'{{"oops": "{leaked_id}"}}'.encode(), headers={"Nats-Msg-Id": "poison-x"})
    await nc.close()
    await wait_until_caught_up(running)

    status = json.loads(cli(running, "status", "--json").stdout)
    assert status["consumers"]["enrollment-county-v1"]["pending"] == 0
    assert status["dead_letters"] == {"enrollment-county-v1": 1}
    assert status["log_head"] == status["published_to_nats"]

    listing = cli(running, "dlq", "list", "--json")
    letters = json.loads(listing.stdout)
    assert [d["reason"] for d in letters] == ["invalid_envelope"]
    assert leaked_id not in listing.stdout  # masked in the listing
    shown = json.loads(cli(running, "dlq", "show", str(letters[0]["id"]), "--raw").stdout)
    assert leaked_id in shown["body"]  # auditors can see the original bytes on request
    retried = cli(running, "dlq", "retry", str(letters[0]["id"]))
    assert retried.returncode == 0, retried.stderr
    await wait_until_caught_up(running)
    assert len(json.loads(cli(running, "dlq", "list", "--json").stdout)) == 2  # refused again, both kept

    replay = cli(running, "replay", "--until", "2099-01-01", "--type", "PolicyIssued")
    lines = [json.loads(line) for line in replay.stdout.splitlines()]
    assert len(lines) == 2 and all(e["event_type"] == "PolicyIssued" for e in lines)
    assert cli(running, "replay", "--until", "2000-01-01").stdout == ""

    config = cli(running, "config")
    assert json.loads(config.stdout)["nats_url"] == running.nats_url
    masked = subprocess.run([sys.executable, "-m", "guanhuai", "config"], capture_output=True, text=True,
                            env=dict(os.environ, GUANHUAI_DB_URL="postgresql://app:s3cret@db.example/guanhuai"))
    assert "s3cret" not in masked.stdout and "***" in masked.stdout
