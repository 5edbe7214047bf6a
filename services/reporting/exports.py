"""Reports in the forms people and tools use: a terminal table, CSV and XLSX with Chinese headings
(as county staff write them); JSON and the raw CSV (Report.csv) with the read model's column names."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import BinaryIO

import xlsxwriter
from xlsxwriter.utility import xl_col_to_name
from rich.console import Group
from rich.table import Table
from rich.text import Text

from services.reporting.report import AREA_TARGET_ZH, DERIVED, LOSS_RATIO_RULE_ZH, Report, headings_zh
from services.reporting.safe import spreadsheet_cell, terminal_text


def title(report: Report) -> str:
    where = report.area["name"] if report.area else ""
    return f"{where}{report.programme_year}年计生家庭意外伤害保险工作完成情况"


COMPACT = {"township_name", "target_total", "target_government", "target_self", "policies", "policies_government_all",
           "policies_self", "completion_rate", "insured_persons", "premium_yuan", "subsidy_yuan", "claims_paid",
           "claims_paid_yuan", "loss_ratio"}


def head_line(report: Report) -> str:
    """The line under every rendering of a report: the log head its figures come from."""
    return f"日志头 / log head: {report.log_head or '—'}"


def rich_table(report: Report, *, compact: bool = False) -> Group:
    """The report as a terminal table, with the log head on a line under it; ``compact`` keeps the
    columns of the county's annex plus premium, subsidies and claims (it fits a 160-column
    terminal). Cells are terminal-safe: area names come from producers."""
    headings = [(k, h) for k, h in headings_zh(report) if not compact or k in COMPACT | {AREA_TARGET_ZH[0]}]
    table = Table(title=terminal_text(title(report)), caption=f"{LOSS_RATIO_RULE_ZH}；数据口径：{terminal_text(report.basis)}")
    for key, heading in headings:
        table.add_column(heading, justify="left" if key == "township_name" else "right", no_wrap=True)
    for row in report.rows:
        table.add_row(*(terminal_text(row.cell(k)) for k, _ in headings))
    table.add_section()
    table.add_row(*(terminal_text(report.total.cell(k)) for k, _ in headings))
    return Group(table, Text(head_line(report)))


def log_head_zh(report: Report) -> str:
    """The log head as a county officer reads it: 数据来源：事件日志位置 N，哈希 H."""
    if not report.log_head:
        return "数据来源：事件日志（尚无事件）"
    position, _, digest = report.log_head.partition(":")
    return f"数据来源：事件日志位置 {position}，哈希 {digest}"


# People's CSV: the table's Chinese headings, then the log head on every line (each line read
# alone still says where it came from).
LOG_HEAD_ZH = "数据来源（日志头）"


def csv_for_people(report: Report) -> bytes:
    """The report as Excel on a Chinese Windows opens it: UTF-8 with a BOM (without one Excel reads
    GBK and 城关 becomes 鍩庡叧), Chinese headings, money in yuan with two decimals, ratios as
    percentages (empty when there is nothing to divide by). Text cells are spreadsheet-safe."""
    out = io.StringIO()
    # CRLF (RFC 4180): a cell holding a bare CR is then quoted, not read as a new row.
    writer = csv.writer(out, lineterminator="\r\n")
    headings = headings_zh(report)
    writer.writerow([heading for _key, heading in headings] + [LOG_HEAD_ZH])
    for row in [*report.rows, report.total]:
        derived = row.derived()
        cells = [("" if derived[k] is None else row.cell(k)) if k in DERIVED else row.cell(k) for k, _ in headings]
        writer.writerow([spreadsheet_cell(c) for c in cells] + [report.log_head or ""])
    return out.getvalue().encode("utf-8-sig")


# The total row's ratios are computed from the total row's own figures: (numerator, denominator).
RATIO_PARTS = {"completion_rate": ("policies", "target_total"),
               "completion_rate_government": ("policies_government_all", "target_government"),
               "completion_rate_self": ("policies_self", "target_self"),
               "loss_ratio": ("claims_paid_yuan", "premium_yuan")}


def write_xlsx(report: Report, path: Path | BinaryIO) -> None:
    """The report as an Excel table (a file path, or a binary stream such as BytesIO): filter
    buttons, a frozen header repeated on every printed page, a bold totals row computed by
    formulas, thousands separators, and a footnote naming the log head. Text goes in with
    write_string only, spreadsheet-safe, so nothing a producer sent can become a formula."""
    # An area's own target is not summed (it is no part of a total): the table's columns all are.
    HEADINGS_ZH = [h for h in headings_zh(report) if h[0] != AREA_TARGET_ZH[0]]  # noqa: N806
    workbook = xlsxwriter.Workbook(path if not isinstance(path, Path) else str(path), {"in_memory": True})
    sheet = workbook.add_worksheet(f"{report.programme_year}年")
    fmt = {name: workbook.add_format({"border": 1, **extra}) for name, extra in {
        "title": {"bold": True, "align": "center", "valign": "vcenter", "font_size": 14},
        "header": {"bold": True, "align": "center", "valign": "vcenter", "text_wrap": True},
        "text": {}, "count": {"num_format": "#,##0"}, "money": {"num_format": "#,##0.00"},
        "pct": {"num_format": "0.00%"}}.items()}
    bold = {k: workbook.add_format({"border": 1, "bold": True, "num_format": n})
            for k, n in {"text": "@", "count": "#,##0", "money": "#,##0.00", "pct": "0.00%"}.items()}
    kind = {key: "text" if key == "township_name" else "pct" if key in DERIVED
            else "money" if key.endswith("_yuan") else "count" for key, _ in HEADINGS_ZH}
    letter = {key: xl_col_to_name(col) for col, (key, _) in enumerate(HEADINGS_ZH)}

    header, first = 1, 2  # row 0 is the title; rows are 0-based here, 1-based in formulas
    rows = report.rows or [None]  # an Excel table needs one data row; a year without townships has an empty one
    total_row = first + len(rows)
    sheet.merge_range(0, 0, 0, len(HEADINGS_ZH) - 1, "", fmt["title"])
    sheet.write_string(0, 0, spreadsheet_cell(title(report)), fmt["title"])  # it may begin with an area's name
    sheet.set_row(header, 36)
    for r, row in enumerate(rows, start=first):
        if row is None:
            continue
        derived = row.derived()
        for col, (key, _heading) in enumerate(HEADINGS_ZH):
            if kind[key] == "text":
                sheet.write_string(r, col, spreadsheet_cell(row.township_name), fmt["text"])
            elif kind[key] == "pct":
                value = derived[key]
                if value is None:  # nothing to divide by: an empty cell, which a filter or SUM skips
                    sheet.write_blank(r, col, None, fmt["pct"])
                else:
                    sheet.write_number(r, col, float(value), fmt["pct"])
            elif kind[key] == "money":
                fen = getattr(row.figures, key.replace("_yuan", "_fen"))
                sheet.write_number(r, col, fen / 100, fmt["money"])  # display only; the exact figure is in fen
            else:
                sheet.write_number(r, col, int(row.cell(key)), fmt["count"])

    def total(key: str) -> tuple[str, float | str]:
        """The totals row cell of a column: its formula and the value it computes (cached in the
        file, so a viewer that does not recalculate shows the right figure)."""
        ref = lambda k: f"{letter[k]}{total_row + 1}"  # noqa: E731
        if kind[key] == "pct":
            num, den = RATIO_PARTS[key]
            value = report.total.derived()[key]
            return f'=IF({ref(den)}=0,"",{ref(num)}/{ref(den)})', "" if value is None else float(value)
        column = f"{letter[key]}{first + 1}:{letter[key]}{total_row}"
        if kind[key] == "money":
            value: float | str = getattr(report.total.figures, key.replace("_yuan", "_fen")) / 100
        else:
            value = int(report.total.cell(key))
        return f"=SUBTOTAL(109,{column})", value  # 109: the sum of the rows a filter leaves visible

    columns = []
    for key, heading in HEADINGS_ZH:
        column = {"header": heading, "header_format": fmt["header"], "format": fmt[kind[key]]}
        if kind[key] == "text":
            column["total_string"] = spreadsheet_cell(report.total.township_name)
        else:
            column["total_function"], column["total_value"] = total(key)
        columns.append(column)
    sheet.add_table(header, 0, total_row, len(HEADINGS_ZH) - 1, {
        "name": f"report_{report.programme_year}", "columns": columns, "total_row": True,
        "autofilter": True, "style": "Table Style Light 9"})
    # The table's total row takes the columns' formats; write it again, bold, with the same formulas.
    for col, (key, _heading) in enumerate(HEADINGS_ZH):
        if kind[key] == "text":
            sheet.write_string(total_row, col, spreadsheet_cell(report.total.township_name), bold["text"])
        else:
            formula, value = total(key)
            sheet.write_formula(total_row, col, formula, bold[kind[key]], value)
    for col, (key, _heading) in enumerate(HEADINGS_ZH):
        sheet.set_column(col, col, 12 if kind[key] == "text" else 14)
    sheet.freeze_panes(first, 1)  # the title and headings, and the township column, stay in view
    sheet.repeat_rows(0, header)  # and are printed on every page
    sheet.set_landscape()
    sheet.fit_to_pages(1, 0)
    notes = [LOSS_RATIO_RULE_ZH, spreadsheet_cell(f"数据口径：{report.basis}"), log_head_zh(report)]
    for i, note in enumerate(notes, start=total_row + 2):
        sheet.write_string(i, 0, note)
    workbook.close()
