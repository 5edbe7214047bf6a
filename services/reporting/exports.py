"""Reports in the forms people and tools use: a terminal table and XLSX with Chinese headings
(as county staff write them); JSON and CSV with the read model's column names."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import xlsxwriter
from rich.console import Group
from rich.table import Table
from rich.text import Text

from services.reporting.report import DERIVED, HEADINGS_ZH, LOSS_RATIO_RULE_ZH, Report
from services.reporting.safe import spreadsheet_cell, terminal_text


def title(report: Report) -> str:
    return f"{report.programme_year}年计生家庭意外伤害保险工作完成情况"


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
    headings = [(k, h) for k, h in HEADINGS_ZH if not compact or k in COMPACT]
    table = Table(title=title(report), caption=f"{LOSS_RATIO_RULE_ZH}；数据口径：{terminal_text(report.basis)}")
    for key, heading in headings:
        table.add_column(heading, justify="left" if key == "township_name" else "right", no_wrap=True)
    for row in report.rows:
        table.add_row(*(terminal_text(row.cell(k)) for k, _ in headings))
    table.add_section()
    table.add_row(*(terminal_text(report.total.cell(k)) for k, _ in headings))
    return Group(table, Text(head_line(report)))


def write_xlsx(report: Report, path: Path | BinaryIO) -> None:
    """The report as a workbook (a file path, or a binary stream such as BytesIO). Text goes in with
    write_string only, spreadsheet-safe, so nothing a producer sent can become a formula."""
    workbook = xlsxwriter.Workbook(path if not isinstance(path, Path) else str(path), {"in_memory": True})
    sheet = workbook.add_worksheet(f"{report.programme_year}年")
    bold = workbook.add_format({"bold": True, "align": "center", "valign": "vcenter", "text_wrap": True, "border": 1})
    cell = workbook.add_format({"border": 1})
    money = workbook.add_format({"border": 1, "num_format": "#,##0.00"})
    pct = workbook.add_format({"border": 1, "num_format": "0.00%"})
    sheet.merge_range(0, 0, 0, len(HEADINGS_ZH) - 1, title(report), bold)
    for col, (_key, heading) in enumerate(HEADINGS_ZH):
        sheet.write(1, col, heading, bold)
        sheet.set_column(col, col, 14 if col else 10)
    for r, row in enumerate([*report.rows, report.total], start=2):
        derived = row.derived()
        for col, (key, _heading) in enumerate(HEADINGS_ZH):
            if key == "township_name":
                sheet.write_string(r, col, spreadsheet_cell(row.township_name), cell)
            elif key in DERIVED:
                value = derived[key]
                if value is None:
                    sheet.write_string(r, col, "—", pct)
                else:
                    sheet.write_number(r, col, float(value), pct)
            elif key.endswith("_yuan"):
                fen = getattr(row.figures, key.replace("_yuan", "_fen"))
                sheet.write_number(r, col, fen / 100, money)  # display only; the exact figure is in fen
            else:
                sheet.write_number(r, col, int(row.cell(key)), cell)
    sheet.write_string(len(report.rows) + 3, 0, LOSS_RATIO_RULE_ZH)
    sheet.write_string(len(report.rows) + 4, 0, spreadsheet_cell(f"数据口径：{report.basis}"))
    sheet.write_string(len(report.rows) + 5, 0, head_line(report))
    workbook.close()
