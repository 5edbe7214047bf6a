"""Every report names the log head it was computed from (DESIGN.md invariant 10), in every form:
the terminal table, JSON, CSV, XLSX, the API (field and header), the dashboard and `replay`; and
the head named is the one of the prefix the figures come from, not whatever the log holds now."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient

from guanhuai.targets import load, read_table
from services.reporting.api import HEAD_HEADER, create_api
from services.reporting.storage import rebuild
from shared.events.audit import log_head
from shared.events.store import EventStore


@dataclass(frozen=True)
class Log:
    db_url: str
    read_model: str  # the head where the read model stands
    now: str  # the head of the whole log, which has moved on since
    at_5: str


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> Log:
    """Mingxi's 2020 targets, the read model rebuilt; then the 2021 targets recorded after it."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('head') / 'log.db'}"

    async def write() -> Log:
        store = await EventStore.open(db_url)
        table = read_table("mingxi-2020")
        await load(store, table, "county-test")
        state = await rebuild(store)
        await load(store, table.model_copy(update={"programme_year": 2021}), "county-test")
        heads = Log(db_url, str(await log_head(store, state.position)), str(await log_head(store)),
                    str(await log_head(store, 5)))
        await store.close()
        return heads

    heads = asyncio.run(write())
    assert heads.read_model != heads.now
    return heads


def guanhuai(*args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "guanhuai", *args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result


def report(log: Log, *args: str) -> subprocess.CompletedProcess[str]:
    return guanhuai("report", "--year", "2020", "--db-url", log.db_url, *args)


def footnotes(data: bytes) -> list[str]:
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    return [str(row[0].value) for row in sheet.iter_rows() if row[0].value is not None]


def zh_head(head: str) -> str:
    position, digest = head.split(":")
    return f"数据来源：事件日志位置 {position}，哈希 {digest}"


def test_the_json_report_names_the_head_the_read_model_stands_at_and_the_log_head_when_computed_from_the_log(log: Log) -> None:
    assert json.loads(report(log, "--format", "json").stdout)["log_head"] == log.read_model
    assert json.loads(report(log, "--format", "json", "--from-log").stdout)["log_head"] == log.now
    assert json.loads(report(log, "--format", "json", "--position", "5").stdout)["log_head"] == log.at_5


def test_the_csv_report_names_the_head_on_every_line(log: Log) -> None:
    rows = list(csv.DictReader(io.StringIO(report(log, "--format", "csv-raw").stdout)))
    assert len(rows) == 11 and {r["log_head"] for r in rows} == {log.read_model}
    for_people = list(csv.DictReader(io.StringIO(report(log, "--format", "csv").stdout.lstrip("\ufeff"))))
    assert len(for_people) == 11 and {r["数据来源（日志头）"] for r in for_people} == {log.read_model}


def test_the_xlsx_report_names_the_head_in_a_footnote(log: Log, tmp_path: Path) -> None:
    book = tmp_path / "report.xlsx"
    report(log, "--format", "xlsx", "--out", str(book), "--from-log")
    assert footnotes(book.read_bytes())[-1] == zh_head(log.now)


def test_the_terminal_table_names_the_head_on_a_line_under_it(log: Log) -> None:
    shown = report(log, "--format", "table").stdout.rstrip().splitlines()
    assert shown[-1] == f"日志头 / log head: {log.read_model}"


def test_replay_names_the_head_of_the_prefix_it_printed_on_its_last_line(log: Log) -> None:
    everything = guanhuai("replay", "--until", "2099-01-01", "--db-url", log.db_url)
    assert everything.stderr.rstrip().splitlines()[-1] == f"日志头 / log head: {log.now}"
    assert len(everything.stdout.splitlines()) == int(log.now.split(":")[0])
    nothing = guanhuai("replay", "--until", "2000-01-01", "--db-url", log.db_url)
    assert nothing.stdout == "" and nothing.stderr.rstrip().splitlines()[-1] == f"日志头 / log head: 0:{'0' * 64}"


def test_every_api_answer_and_the_dashboard_name_the_head(log: Log) -> None:
    with TestClient(create_api(log.db_url)) as client:
        as_json = client.get("/api/report", params={"year": 2020})
        as_csv = client.get("/api/report", params={"year": 2020, "format": "csv", "raw": 1})
        as_xlsx = client.get("/api/report", params={"year": 2020, "format": "xlsx"})
        known_at = client.get("/api/report", params={"year": 2020, "known_at": "2099-01-01T00:00:00+08:00"})
        dashboard = client.get("/dashboard", params={"year": 2020})
    assert as_json.json()["log_head"] == as_json.headers[HEAD_HEADER] == log.read_model
    assert as_csv.headers[HEAD_HEADER] == log.read_model
    assert {r["log_head"] for r in csv.DictReader(io.StringIO(as_csv.text))} == {log.read_model}
    assert as_xlsx.headers[HEAD_HEADER] == log.read_model
    assert footnotes(as_xlsx.content)[-1] == zh_head(log.read_model)
    assert known_at.json()["log_head"] == known_at.headers[HEAD_HEADER] == log.now
    assert dashboard.headers[HEAD_HEADER] == log.read_model
    assert f'id="log-head">日志头 / log head：<code>{log.read_model}</code>' in dashboard.text
