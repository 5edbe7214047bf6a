"""Reports in the forms people and tools use: a terminal table and XLSX with Chinese headings
(as county staff write them); JSON and CSV with the read model's column names."""

from __future__ import annotations

from pathlib import Path

import xlsxwriter
from rich.table import Table

from services.reporting.report import DERIVED, HEADINGS_ZH, LOSS_RATIO_RULE_ZH, Report


def title(report: Report) -> str:
    return f"{report.programme_year}年计生家庭意外伤害保险工作完成情况"


COMPACT = {"township_name", "target_total", "target_government", "target_self", "policies", "policies_government_all",
           "policies_self", "completion_rate", "insured_persons", "premium_yuan", "subsidy_yuan", "claims_paid",
           "claims_paid_yuan", "loss_ratio"}


def rich_table(report: Report, *, compact: bool = False) -> Table:
    """The report as a terminal table; ``compact`` keeps the columns of the county's annex plus
    premium, subsidies and claims (it fits a 160-column terminal)."""
    headings = [(k, h) for k, h in HEADINGS_ZH if not compact or k in COMPACT]
    table = Table(title=title(report), caption=f"{LOSS_RATIO_RULE_ZH}；数据口径：{report.basis}")
    for key, heading in headings:
        table.add_column(heading, justify="left" if key == "township_name" else "right", no_wrap=True)
    for row in report.rows:
        table.add_row(*(row.cell(k) for k, _ in headings))
    table.add_section()
    table.add_row(*(report.total.cell(k) for k, _ in headings))
    return table


def write_xlsx(report: Report, path: Path) -> None:
    workbook = xlsxwriter.Workbook(str(path))
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
                sheet.write_string(r, col, row.township_name, cell)
            elif key in DERIVED:
                value = derived[key]
                sheet.write(r, col, float(value) if value is not None else "—", pct)
            elif key.endswith("_yuan"):
                fen = getattr(row.figures, key.replace("_yuan", "_fen"))
                sheet.write_number(r, col, fen / 100, money)  # display only; the exact figure is in fen
            else:
                sheet.write_number(r, col, int(row.cell(key)), cell)
    sheet.write(len(report.rows) + 3, 0, LOSS_RATIO_RULE_ZH)
    sheet.write(len(report.rows) + 4, 0, f"数据口径：{report.basis}")
    workbook.close()
