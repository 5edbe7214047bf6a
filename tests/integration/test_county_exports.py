"""Exports for county staff: the CSV opens in Excel on a Chinese Windows without garbling (a BOM,
Chinese headings, yuan), the machine CSV stays as tools read it, and the XLSX is an Excel table
(filter, frozen header, print titles, a totals row of formulas, thousands separators, a Chinese
footnote naming the log head)."""

from __future__ import annotations

import asyncio
import codecs
import csv
import io
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
from fastapi.testclient import TestClient

from guanhuai.targets import load, read_table
from services.reporting.api import create_api
from services.reporting.exports import csv_for_people, write_xlsx
from services.reporting.projection import TownshipYear
from services.reporting.report import Report, ReportRow
from services.reporting.storage import rebuild
from shared.events.store import EventStore


def excel_reads(data: bytes) -> str:
    """How Excel decodes a CSV it opens: UTF-8 when the file starts with a BOM, else the system's
    ANSI code page (GBK on a Chinese Windows)."""
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8):].decode("utf-8")
    return data.decode("gbk", errors="replace")


def a_report() -> Report:
    """Two townships with premium and claims (城关 has no self-paid target: no ratio there)."""
    chengguan = TownshipYear(2024, "chengguan", target_total=1200, target_government=1200, policies=1100,
                             policies_government=1100, insured_persons=3300, premium_fen=2750000, claims_paid=2,
                             claims_paid_fen=1500000)
    xuefeng = TownshipYear(2024, "xuefeng", target_total=800, target_government=500, target_self=300, policies=700,
                           policies_government=450, policies_self=250, insured_persons=2000, premium_fen=1750050)
    total = TownshipYear(2024, "total", target_total=2000, target_government=1700, target_self=300, policies=1800,
                         policies_government=1550, policies_self=250, insured_persons=5300, premium_fen=4500050,
                         claims_paid=2, claims_paid_fen=1500000)
    return Report(2024, [ReportRow(chengguan, "城关"), ReportRow(xuefeng, "雪峰")], ReportRow(total, "合计"),
                  basis="read model", log_head="42:" + "ab" * 32)


def test_the_csv_for_people_starts_with_a_bom_so_excel_reads_chengguan_not_gbk_garble() -> None:
    data = csv_for_people(a_report())
    assert data.startswith(codecs.BOM_UTF8)
    rows = list(csv.reader(io.StringIO(excel_reads(data), newline="")))
    assert rows[1][0] == "城关" and rows[-1][0] == "合计"


def test_the_csv_for_people_has_chinese_headings_money_in_yuan_and_an_empty_cell_where_no_ratio_exists() -> None:
    rows = list(csv.DictReader(io.StringIO(excel_reads(csv_for_people(a_report())), newline="")))
    chengguan, total = rows[0], rows[-1]
    assert chengguan["保费(元)"] == "27500.00" and total["保费(元)"] == "45000.50"
    assert chengguan["赔付金额(元)"] == "15000.00" and chengguan["已投保户数"] == "1100"
    assert chengguan["自主投保完成率"] == "" and chengguan["完成率"] == "91.67%"
    assert {r["数据来源（日志头）"] for r in rows} == {"42:" + "ab" * 32}


def test_the_raw_csv_keeps_column_names_and_fen_without_a_bom_for_tools() -> None:
    text = a_report().csv()
    assert not text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert rows[0]["township_name"] == "城关" and rows[0]["premium_fen"] == "2750000"


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Mingxi's 2020 targets in a log, the read model rebuilt."""
    url = f"sqlite:///{tmp_path_factory.mktemp('exports') / 'log.db'}"

    async def write() -> None:
        store = await EventStore.open(url)
        await load(store, read_table("mingxi-2020"), "county-test")
        await rebuild(store)
        await store.close()

    asyncio.run(write())
    return url


def report_command(db_url: str, *args: str) -> bytes:
    result = subprocess.run([sys.executable, "-m", "guanhuai", "report", "--year", "2020", "--db-url", db_url, *args],
                            capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def test_report_format_csv_writes_excel_csv_and_csv_raw_the_machine_form(db_url: str, tmp_path: Path) -> None:
    printed = report_command(db_url, "--format", "csv")
    out = tmp_path / "report.csv"
    report_command(db_url, "--format", "csv", "--out", str(out))
    for data in (printed, out.read_bytes()):
        assert data.startswith(codecs.BOM_UTF8)
        assert excel_reads(data).splitlines()[1].startswith("城关,475,")
    raw = report_command(db_url, "--format", "csv-raw")
    assert raw.decode().startswith("programme_year,township,township_name,target_total")


def test_the_api_serves_the_excel_csv_and_with_raw_1_the_machine_form(db_url: str) -> None:
    with TestClient(create_api(db_url)) as client:
        people = client.get("/api/report", params={"year": 2020, "format": "csv"})
        raw = client.get("/api/report", params={"year": 2020, "format": "csv", "raw": 1})
    assert people.content.startswith(codecs.BOM_UTF8)
    assert excel_reads(people.content).splitlines()[0].startswith("乡镇,指导任务数,")
    assert not raw.content.startswith(codecs.BOM_UTF8) and raw.text.startswith("programme_year,township,")


@pytest.fixture
def workbook() -> openpyxl.Workbook:
    book = io.BytesIO()
    write_xlsx(a_report(), book)
    return openpyxl.load_workbook(io.BytesIO(book.getvalue()))


def test_the_xlsx_is_an_excel_table_with_a_filter_a_frozen_header_and_print_titles(workbook: openpyxl.Workbook) -> None:
    sheet = workbook.active
    (table,) = sheet.tables.values()
    assert table.ref == "A2:U5"  # headings, two townships, the totals row
    assert table.autoFilter is not None and table.totalsRowCount == 1
    assert sheet.freeze_panes == "B3"
    assert sheet.print_title_rows == "$1:$2"


def test_the_xlsx_totals_row_is_bold_formulas_over_the_visible_rows(workbook: openpyxl.Workbook) -> None:
    sheet = workbook.active
    total = {cell.column_letter: cell for cell in sheet[5]}
    assert total["A"].value == "合计" and total["A"].font.b
    assert total["B"].value == "=SUBTOTAL(109,B3:B4)" and total["B"].font.b
    assert total["L"].value == "=SUBTOTAL(109,L3:L4)"  # 保费(元)
    assert total["H"].value == '=IF(B5=0,"",E5/B5)'  # 完成率 of the county, from the totals row


def test_the_xlsx_has_thousands_separators_and_no_dash_text_in_percent_cells(workbook: openpyxl.Workbook) -> None:
    sheet = workbook.active
    assert sheet["B3"].number_format == "#,##0" and sheet["B3"].value == 1200
    assert sheet["L3"].number_format == "#,##0.00" and sheet["L3"].value == 27500
    percent_cells = [sheet[f"{col}{row}"].value for col in "HIJU" for row in (3, 4)]
    assert "—" not in percent_cells and sheet["J3"].value is None  # 城关 has no self-paid target


def test_the_xlsx_footnote_names_the_log_head_in_chinese(workbook: openpyxl.Workbook) -> None:
    notes = [row[0].value for row in workbook.active.iter_rows(min_row=6) if row[0].value]
    assert notes[-1] == f"数据来源：事件日志位置 42，哈希 {'ab' * 32}"


def roster_template(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guanhuai", "roster-template", *args], capture_output=True, text=True,
                          timeout=120)


def test_roster_template_offers_the_townships_registered_in_the_database_as_a_dropdown(db_url: str, tmp_path: Path) -> None:
    # Loading Mingxi's targets registered its county and ten townships (enrollment_areas).
    path = tmp_path / "roster.xlsx"
    result = roster_template(str(path), "--db-url", db_url)
    assert result.returncode == 0, result.stderr
    rules = [dv.formula1 for dv in openpyxl.load_workbook(path).worksheets[0].data_validations.dataValidation]
    (townships,) = [r for r in rules if "城关" in r]
    assert {t.name for t in read_table("mingxi-2020").townships} <= set(townships.strip('"').split(","))
    assert "明溪县" not in townships  # the county is no township


def test_roster_template_refuses_a_txt_path_in_one_line_and_writes_nothing(tmp_path: Path) -> None:
    result = roster_template(str(tmp_path / "roster.txt"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and ".xlsx" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "roster.txt").exists()


def test_roster_problems_print_in_chinese_on_whole_lines_when_not_on_a_terminal(tmp_path: Path) -> None:
    from guanhuai.rosters import COLUMNS, TEMPLATE_ROWS

    rows = [list(COLUMNS), *(list(row) for row in TEMPLATE_ROWS)]  # copies: TEMPLATE_ROWS is shared
    rows[2][list(COLUMNS).index("出生日期")] = "2024-13-01"
    rows[1][list(COLUMNS).index("类别")] = "五保户"  # its problem and the date's make one line of 200 columns
    path = tmp_path / "roster.csv"
    path.write_text("\n".join(",".join(r) for r in rows), encoding="utf-8-sig")
    # The one household is refused, so nothing is sent: no NATS needed.
    result = subprocess.run([sys.executable, "-m", "guanhuai", "publish", str(path), "--source", "county-test", "--no-wait"],
                            capture_output=True, text=True, timeout=120)
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("第 2 行")]
    assert line.startswith("第 2 行 类别：须为二女结扎户、") and line.endswith("；第 3 行 出生日期：不是有效日期（2024-13-01）")
