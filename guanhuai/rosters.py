"""Reading what county and insurer staff hand over: JSON lines of events, or a household roster
(花名册) as CSV or XLSX in the layout county staff keep, one row per member.

Every bad line or row is reported with its number and reason; good ones go through. Event ids of
roster households are derived from the source, year and household number, so publishing the same
file twice publishes nothing new. Once the households are answered, a roster gets a result file
beside it, in its format: its own columns and each row's outcome (:func:`write_result`).
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from guanhuai.outcomes import Outcome
from services.reporting.safe import spreadsheet_cell
from shared.domain.calendar import CST
from shared.domain.identity import mask, mask_in_text
from shared.events import EventMessage, reasons, registry
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
    lines: tuple[int, ...] = ()  # every row it refuses (a household's member rows), when more than ``line``


@dataclass(frozen=True)
class MemberRow:
    line: int
    name: str
    resident_id: str


@dataclass
class Parsed:
    events: list[EventMessage]
    problems: list[Problem]
    rows: dict[uuid.UUID, list[MemberRow]] = field(default_factory=dict)  # a roster household's event id -> its rows


def read_events(path: Path, source: str) -> Parsed:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return read_json_lines(path)
    if suffix in (".csv", ".xlsx", ".xlsm"):
        return read_roster(_records(read_sheet(path)), source)
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


@dataclass
class Sheet:
    """A roster's cells as read: its heading row, and each non-blank row with its line number."""

    header: list[str]
    rows: list[tuple[int, list[Any]]]


def read_sheet(path: Path) -> Sheet:
    if path.suffix.lower() == ".csv":
        lines = csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig")))
        header = next(lines, [])
        return Sheet(header, [(n, values) for n, values in enumerate(lines, start=2) if any(v.strip() for v in values)])
    from openpyxl import load_workbook

    book = load_workbook(path, read_only=True, data_only=True)
    try:
        cells = book.worksheets[0].iter_rows(values_only=True)
        header = [str(h).strip() if h is not None else "" for h in next(cells, ())]
        return Sheet(header, [(n, list(values)) for n, values in enumerate(cells, start=2)
                              if any(v is not None and str(v).strip() for v in values)])
    finally:
        book.close()


def _records(sheet: Sheet) -> Iterator[tuple[int, dict[str, str]]]:
    header = [h.strip() for h in sheet.header]
    for number, values in sheet.rows:
        padded = list(values) + [None] * (len(header) - len(values))
        yield number, {h: _cell(v) for h, v in zip(header, padded, strict=False) if h}


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
            lines = tuple(n for n, _ in members)
            parsed.problems.append(Problem(first_line, f"household {household_id} (lines {', '.join(map(str, lines))}): "
                                                       f"{_reason(exc)}", lines))
            continue
        event_id = uuid.uuid5(ROSTER_NAMESPACE, f"{source}/{year}/{household_id}")
        parsed.rows[event_id] = [MemberRow(n, r["name"], r["resident_id"].upper()) for n, r in members]
        parsed.events.append(EventMessage.new(payload, source=source, event_id=event_id,
                                              occurred_at=datetime.combine(payload.paid_on, time(9), CST)))
    return parsed


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)[:5])
    if isinstance(exc, KeyError):
        return f"missing column {exc.args[0]}"
    return str(exc)


# The columns a result file adds to the roster's own, and the states a row can be in.
RESULT_COLUMNS = ["状态", "保单号", "参保人数", "未参保成员及原因", "拒绝原因"]
INSURED, LEFT_OUT, REJECTED, REFUSED, UNANSWERED = "已参保", "未参保", "已拒绝", "无法读取", "未答复"


@dataclass(frozen=True)
class Tally:
    """Households insured, rejected and still unanswered; roster rows refused (unreadable)."""

    insured: int
    rejected: int
    refused: int
    unanswered: int

    def line(self) -> str:
        zh = f"已参保 {self.insured} 户，拒绝 {self.rejected} 户，无法读取 {self.refused} 行"
        en = f"{self.insured} insured, {self.rejected} rejected, {self.refused} refused"
        if self.unanswered:
            zh, en = f"{zh}，未答复 {self.unanswered} 户", f"{en}, {self.unanswered} unanswered"
        return f"{zh} / {en}"


def tally(parsed: Parsed, sent: list[EventMessage], outcomes: dict[uuid.UUID, Outcome]) -> Tally:
    answered = [outcomes[e.event_id] for e in sent if e.event_id in outcomes]
    rejected = sum(o.rejected for o in answered)
    refused = sum(len(p.lines or (p.line,)) for p in parsed.problems)
    return Tally(len(answered) - rejected, rejected, refused, len(sent) - len(answered))


def row_results(parsed: Parsed, outcomes: dict[uuid.UUID, Outcome]) -> dict[int, list[Any]]:
    """The result columns of each roster line. A household's policy number, insured count and
    members left out stand on each of its rows; 状态 is the row's own member (未参保 when left out)."""
    results: dict[int, list[Any]] = {}
    for problem in parsed.problems:
        for line in problem.lines or (problem.line,):
            results[line] = [REFUSED, "", "", "", mask_in_text(problem.reason)]
    for event_id, rows in parsed.rows.items():
        outcome = outcomes.get(event_id)
        if outcome is None:
            results.update({r.line: [UNANSWERED, "", "", "", ""] for r in rows})
            continue
        left_out = "；".join(f"{name}：{reasons.zh(code)}" for name, code in _named(outcome.excluded, rows))
        why = "；".join(reasons.zh(code) for code in outcome.reasons)
        insured = list(outcome.insured)
        for row in rows:
            if outcome.rejected:
                status = REJECTED
            elif row.resident_id in insured:
                insured.remove(row.resident_id)  # a member listed twice is insured once
                status = INSURED
            else:
                status = LEFT_OUT
            results[row.line] = [status, outcome.policy_number or "", len(outcome.insured), left_out, why]
    return results


def _named(excluded: tuple[tuple[str, str], ...], rows: list[MemberRow]) -> list[tuple[str, str]]:
    """Members left out, by the name on their roster row (their masked ID number when none matches)."""
    unused = list(rows)
    named = []
    for number, code in excluded:
        row = next((r for r in unused if r.resident_id == number.upper()), None)
        if row is not None:
            unused.remove(row)
        named.append((row.name if row else mask(number), code))
    return named


def result_path(path: Path) -> Path:
    """Beside the roster, in its format: ``roster.xlsx`` -> ``roster.结果.xlsx`` (a result file
    published again gets its result written over itself)."""
    stem = path.stem if path.stem.endswith(".结果") else f"{path.stem}.结果"
    return path.with_name(stem + (".csv" if path.suffix.lower() == ".csv" else ".xlsx"))


def write_result(path: Path, sheet: Sheet, results: dict[int, list[Any]]) -> Path:
    """The roster's own columns (result columns it already had are replaced) and the result's;
    returns where it was written."""
    keep = [i for i, heading in enumerate(sheet.header) if heading.strip() not in RESULT_COLUMNS]
    header = [sheet.header[i] for i in keep] + RESULT_COLUMNS
    target = result_path(path)
    # A CSV cell cannot say "text": what we add (names above all) is kept from being read as a
    # formula the usual way. The roster's own cells go back as the county wrote them.
    safe = spreadsheet_cell if target.suffix == ".csv" else (lambda value: value)
    blank = [""] * len(RESULT_COLUMNS)
    rows = [[values[i] if i < len(values) else None for i in keep] + [safe(v) for v in results.get(n, blank)]
            for n, values in sheet.rows]
    if target.suffix == ".csv":
        with target.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    else:
        _write_xlsx(target, header, rows)
    return target


def _write_xlsx(target: Path, header: list[str], rows: list[list[Any]]) -> None:
    import xlsxwriter

    # Text stays text: nothing a row holds is read as a formula, a number or a link.
    book = xlsxwriter.Workbook(str(target), {"strings_to_formulas": False, "strings_to_numbers": False,
                                             "strings_to_urls": False})
    sheet = book.add_worksheet("结果")
    bold, day = book.add_format({"bold": True}), book.add_format({"num_format": "yyyy-mm-dd"})
    for col, heading in enumerate(header):
        sheet.write_string(0, col, heading, bold)
        sheet.set_column(col, col, 30 if heading in ("未参保成员及原因", "拒绝原因") else 20 if heading == "身份证号" else 12)
    for r, values in enumerate(rows, start=1):
        for col, value in enumerate(values):
            if isinstance(value, date):  # datetimes too
                sheet.write_datetime(r, col, value, day)
            elif value is not None:
                sheet.write(r, col, value)
    book.close()


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
