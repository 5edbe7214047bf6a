"""Reading what county and insurer staff hand over: JSON lines of events, or a household roster
(花名册) as CSV or XLSX in the layout county staff keep, one row per member.

Every bad line or row is reported with its number and reason; good ones go through. Event ids of
roster households are derived from the source, year and household number, so publishing the same
file twice publishes nothing new.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.domain.calendar import CST
from shared.events import EventMessage, registry
from shared.events.enrollment import HouseholdCategory, HouseholdRegistered, Member, Payer, Relation
from shared.events.registry import EventContractError

ROSTER_NAMESPACE = uuid.UUID("a3c0f0d6-3f43-4f53-8a40-6775616e6875")

# Column headings as county staff write them, and what they mean.
COLUMNS = {
    "投保年度": "programme_year",
    "户编号": "household_id",
    "乡镇": "township",
    "村": "village",
    "类别": "category",
    "缴费方": "payer",
    "缴费单位": "payer_name",
    "份数": "units",
    "缴费日期": "paid_on",
    "续保": "renewal",
    "姓名": "name",
    "身份证号": "resident_id",
    "与户主关系": "relation",
    "出生日期": "birth_date",
}
CATEGORY_ZH = {
    "二女结扎户": "two_daughters_sterilised", "独女领证户": "single_daughter_certified", "计生特殊家庭": "special_family",
    "失独家庭": "lost_only_child", "独生子女伤残家庭": "only_child_disabled", "困难计生家庭": "poor",
    "精准扶贫计生户": "poverty_relief", "机关企事业单位职工": "agency_staff", "其他计生家庭": "general",
}
PAYER_ZH = {"政府": "government", "政府投保": "government", "单位": "agency", "单位投保": "agency", "个人": "self",
            "自主投保": "self", "自主": "self"}
RELATION_ZH = {"户主": "head", "本人": "head", "配偶": "spouse", "妻子": "spouse", "丈夫": "spouse", "子女": "child",
               "儿子": "child", "女儿": "child"}
YES = {"是", "yes", "true", "1", "y"}
TEMPLATE_ROWS = [
    ["2024", "CG-0001", "城关", "城东村", "二女结扎户", "政府", "", "1", "2024-03-01", "否", "王建国", "35042119750412031X", "户主", "1975-04-12"],
    ["2024", "CG-0001", "城关", "城东村", "二女结扎户", "政府", "", "1", "2024-03-01", "否", "李秀英", "35042119780903042X", "配偶", "1978-09-03"],
]


@dataclass(frozen=True)
class Problem:
    line: int
    reason: str


@dataclass
class Parsed:
    events: list[EventMessage]
    problems: list[Problem]


def read_events(path: Path, source: str) -> Parsed:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_json_lines(path)
    if suffix == ".csv":
        return read_roster(_csv_rows(path), source)
    if suffix in (".xlsx", ".xlsm"):
        return read_roster(_xlsx_rows(path), source)
    raise ValueError(f"{path.name}: give .jsonl (events), .csv or .xlsx (a household roster)")


def read_json_lines(path: Path) -> Parsed:
    parsed = Parsed([], [])
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                parsed.events.append(registry.parse_message(line))
            except EventContractError as exc:
                parsed.problems.append(Problem(number, f"{exc.code}: {exc}"))
    return parsed


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    text = path.read_bytes().decode("utf-8-sig")
    for number, row in enumerate(csv.DictReader(io.StringIO(text)), start=2):
        yield number, {k.strip(): (v or "").strip() for k, v in row.items() if k}


def _xlsx_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    rows = book.worksheets[0].iter_rows(values_only=True)
    header = [str(h).strip() if h is not None else "" for h in next(rows)]
    for number, values in enumerate(rows, start=2):
        if all(v is None or str(v).strip() == "" for v in values):
            continue
        yield number, {h: _cell(v) for h, v in zip(header, values, strict=False) if h}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def read_roster(rows: Iterator[tuple[int, dict[str, str]]], source: str) -> Parsed:
    """Group member rows by (year, household number) into HouseholdRegistered events."""
    parsed = Parsed([], [])
    households: dict[tuple[str, str], list[tuple[int, dict[str, str]]]] = {}
    for number, raw in rows:
        row = {COLUMNS.get(k, k): v for k, v in raw.items()}
        missing = [zh for zh, key in COLUMNS.items() if key in ("programme_year", "household_id") and not row.get(key)]
        if missing:
            parsed.problems.append(Problem(number, f"missing {', '.join(missing)}"))
            continue
        households.setdefault((row["programme_year"], row["household_id"]), []).append((number, row))
    for (year, household_id), members in households.items():
        first_line, head = members[0]
        try:
            payload = HouseholdRegistered(
                household_id=household_id, programme_year=int(year), township=head["township"],
                village=head.get("village") or None,
                category=HouseholdCategory(CATEGORY_ZH.get(head.get("category", ""), head.get("category", ""))),
                payer=Payer(PAYER_ZH.get(head.get("payer", ""), head.get("payer", ""))),
                payer_name=head.get("payer_name") or None, units=int(head.get("units") or 1),
                members=[Member(name=r["name"], resident_id=r["resident_id"],
                                relation=Relation(RELATION_ZH.get(r.get("relation", ""), r.get("relation", ""))),
                                birth_date=date.fromisoformat(r["birth_date"])) for _, r in members],
                paid_on=date.fromisoformat(head["paid_on"]), renewal=head.get("renewal", "").lower() in YES,
            )
        except (ValidationError, ValueError, KeyError) as exc:
            lines = ", ".join(str(n) for n, _ in members)
            parsed.problems.append(Problem(first_line, f"household {household_id} (lines {lines}): {_reason(exc)}"))
            continue
        event_id = uuid.uuid5(ROSTER_NAMESPACE, f"{source}/{year}/{household_id}")
        parsed.events.append(EventMessage.new(payload, source=source, event_id=event_id,
                                              occurred_at=datetime.combine(payload.paid_on, time(9), CST)))
    return parsed


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)[:5])
    if isinstance(exc, KeyError):
        return f"missing column {exc.args[0]}"
    return str(exc)


def write_template(path: Path) -> None:
    headings = list(COLUMNS)
    if path.suffix.lower() == ".xlsx":
        import xlsxwriter

        book = xlsxwriter.Workbook(str(path))
        sheet = book.add_worksheet("花名册")
        bold = book.add_format({"bold": True})
        for col, heading in enumerate(headings):
            sheet.write(0, col, heading, bold)
            sheet.set_column(col, col, 20 if heading == "身份证号" else 12)
        for r, row in enumerate(TEMPLATE_ROWS, start=1):
            for col, value in enumerate(row):
                sheet.write_string(r, col, value)
        book.close()
    else:
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(headings)
            writer.writerows(TEMPLATE_ROWS)
