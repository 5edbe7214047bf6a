"""Area names come from producers; reports carry them to spreadsheets and terminals. A township
registered as ``=HYPERLINK(...)`` must reach Excel as text, and one registered with an escape
sequence or rich markup must reach the terminal inert (issue #17, break 8)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import openpyxl
from openpyxl.utils.escape import unescape
import pytest
from fastapi.testclient import TestClient

from guanhuai.targets import CountyRef, TargetTable, TownshipRow, load
from services.reporting.api import create_api
from services.reporting.safe import FORMULA_START, spreadsheet_cell
from services.reporting.storage import rebuild
from shared.events.store import EventStore
from tests.support.probes import probe

FORMULAS = ['=HYPERLINK("http://x","y")', "@SUM(A1)", "+1+1", "-2+3", "\t=1", "\r=1"]
TERMINAL = ["\x1b[31mred", "[bold]x[/bold]", "\x9b31mcsi", "bell\x07"]
HOSTILE = FORMULAS + TERMINAL


@pytest.fixture(scope="module")
def hostile_log(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A log whose county registered one township under each hostile name, read model rebuilt."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('hostile') / 'log.db'}"
    table = TargetTable(source="test", programme_year=2024, county=CountyRef(code="c1", name="某县"), townships=[
        TownshipRow(code=f"t{i}", name=name, target_total=10, target_government=6, target_self=4)
        for i, name in enumerate(HOSTILE)])

    async def write() -> None:
        store = await EventStore.open(db_url)
        await load(store, table, "county-test")
        await rebuild(store)
        await store.close()

    asyncio.run(write())
    return db_url


def report(db_url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    result = subprocess.run([sys.executable, "-m", "guanhuai", "report", "--year", "2024", "--db-url", db_url, *args],
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return result


def read_back(names: list[str], line: str) -> list[str]:
    """Check each formula-looking name came back as ``'`` + itself; print the probe line."""
    neutralised = sum(1 for name in FORMULAS if "'" + name in names)
    raw = sum(1 for name in names if name.startswith(FORMULA_START))
    probe(line, sent=len(FORMULAS), neutralised=neutralised, raw=raw)
    assert (neutralised, raw) == (len(FORMULAS), 0), names
    assert "\x1b[31mred" in names and "[bold]x[/bold]" in names  # not formulas: left as they are
    return names


def csv_names(data: bytes) -> list[str]:
    """The township names of either CSV: for people (BOM, 乡镇) or raw (township_name)."""
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    return [row.get("乡镇", row.get("township_name")) for row in rows[:-1]]  # the last line is the total


def xlsx_names(data: bytes) -> list[str]:
    sheet = openpyxl.load_workbook(io.BytesIO(data)).active
    cells = [row[0] for row in sheet.iter_rows(min_row=3, max_row=2 + len(HOSTILE))]
    assert all(c.data_type != "f" for c in cells)
    return [unescape(c.value) for c in cells]  # OOXML writes a CR as _x000D_; openpyxl leaves it so


def test_township_names_that_look_like_formulas_leave_the_report_command_as_quoted_text_in_csv(hostile_log: str) -> None:
    read_back(csv_names(report(hostile_log, "--format", "csv").stdout), "csv_formula_injection")
    read_back(csv_names(report(hostile_log, "--format", "csv-raw").stdout), "csv_raw_formula_injection")


def test_township_names_that_look_like_formulas_are_quoted_text_never_formulas_in_the_xlsx(hostile_log: str, tmp_path: Path) -> None:
    book = tmp_path / "report.xlsx"
    report(hostile_log, "--format", "xlsx", "--out", str(book))
    read_back(xlsx_names(book.read_bytes()), "xlsx_formula_injection")


def test_the_api_quotes_township_names_that_look_like_formulas_in_csv_and_xlsx(hostile_log: str) -> None:
    with TestClient(create_api(hostile_log)) as client:
        as_csv = client.get("/api/report", params={"year": 2024, "format": "csv"})
        as_xlsx = client.get("/api/report", params={"year": 2024, "format": "xlsx"})
        as_raw = client.get("/api/report", params={"year": 2024, "format": "csv", "raw": 1})
    read_back(csv_names(as_csv.content), "api_csv_formula_injection")
    read_back(csv_names(as_raw.content), "api_csv_raw_formula_injection")
    read_back(xlsx_names(as_xlsx.content), "api_xlsx_formula_injection")


def test_the_terminal_table_shows_escape_sequences_and_markup_from_township_names_inert(hostile_log: str) -> None:
    shown = report(hostile_log, "--format", "table").stdout.decode()
    controls = [c for c in shown if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F]
    literal_markup = shown.count("[bold]x[/bold]")
    probe("terminal_injection", sent=len(TERMINAL) + 2, control_bytes=len(controls), markup_shown_literally=literal_markup)
    assert controls == []
    assert literal_markup == 1
    assert "red" in shown and "csi" in shown and "bell" in shown  # the printable rest is kept


def test_only_text_is_quoted_a_negative_number_stays_a_number() -> None:
    assert spreadsheet_cell(-2) == -2 and spreadsheet_cell(-0.5) == -0.5
    assert spreadsheet_cell("-2") == "'-2"  # a name that looks like a number is still text
    assert spreadsheet_cell("城关") == "城关" and spreadsheet_cell(None) is None


def test_replay_writes_control_characters_from_township_names_as_json_escapes(hostile_log: str) -> None:
    result = subprocess.run([sys.executable, "-m", "guanhuai", "replay", "--until", "2099-01-01", "--type", "AreaRegistered",
                             "--db-url", hostile_log], capture_output=True, timeout=120)
    shown = result.stdout.decode()
    controls = [c for c in shown if (ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F]
    probe("replay_terminal_injection", sent=len(TERMINAL), control_bytes=len(controls))
    assert result.returncode == 0 and controls == []
    names = {json.loads(line)["payload"]["name"] for line in shown.splitlines()}
    assert set(HOSTILE) <= names  # the JSON still says exactly what was recorded
