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
    """Group member rows by (year, household number) into HouseholdRegistered events. A household
    with a bad cell is refused whole, each bad cell named by its line and column in Chinese."""
    parsed = Parsed([], [])
    households: dict[tuple[str, str], list[tuple[int, dict[str, str]]]] = {}
    for number, raw in rows:
        row = {COLUMNS.get(k, k): v for k, v in raw.items()}
        missing = [zh for zh, key in COLUMNS.items() if key in ("programme_year", "household_id") and not row.get(key)]
        if missing:
            parsed.problems.append(Problem(number, "；".join(say(number, zh, "不能为空") for zh in missing)))
            continue
        households.setdefault((row["programme_year"], row["household_id"]), []).append((number, row))
    for (year, household_id), members in households.items():
        first_line, head = members[0]
        lines = tuple(n for n, _ in members)
        try:
            payload = _household(household_id, year, members)
        except RowProblems as exc:
            parsed.problems.append(Problem(min(line for line, _ in exc.items) if exc.items else first_line,
                                           "；".join(text for _, text in exc.items), lines))
            continue
        event_id = uuid.uuid5(ROSTER_NAMESPACE, f"{source}/{year}/{household_id}")
        parsed.rows[event_id] = [MemberRow(n, r["name"], r["resident_id"].upper()) for n, r in members]
        parsed.events.append(EventMessage.new(payload, source=source, event_id=event_id,
                                              occurred_at=datetime.combine(payload.paid_on, time(9), CST)))
    return parsed


# What county staff may write in the columns with a fixed set of values (the first ones are
# offered in the template's dropdowns; the others are accepted too).
CATEGORY_CHOICES = list(CATEGORY_ZH)
PAYER_CHOICES = ["政府", "单位", "个人"]
RELATION_CHOICES = ["户主", "配偶", "子女"]
DATE_FORMAT = "年-月-日，如 2024-03-01"
HEADING = {key: zh for zh, key in COLUMNS.items()}


def say(line: int, column: str, message: str, value: str = "") -> str:
    """One problem as county staff read it: ``第 5 行 出生日期：不是有效日期（2024-13-01）``."""
    return f"第 {line} 行 {column}：{message}" + (f"（{value}）" if value else "")


class RowProblems(Exception):
    def __init__(self, items: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(text for _, text in items))
        self.items = items


def _household(household_id: str, year: str, members: list[tuple[int, dict[str, str]]]) -> HouseholdRegistered:
    problems: list[tuple[int, str]] = []

    def cell(line: int, row: dict[str, str], key: str, convert: Any, default: Any = None) -> Any:
        value = row.get(key, "")
        if not value and default is not None:
            return default
        try:
            return convert(value)
        except ValueError as exc:
            problems.append((line, say(line, HEADING[key], str(exc), value)))
            return None

    first_line, head = members[0]
    fields = {key: cell(first_line, head, key, convert, default) for key, convert, default in (
        ("programme_year", _integer, None), ("township", _text, None), ("category", _choice(CATEGORY_ZH, HouseholdCategory, CATEGORY_CHOICES), None),
        ("payer", _choice(PAYER_ZH, Payer, PAYER_CHOICES), None), ("units", _integer, 1), ("paid_on", _day, None))}
    people = [(line, {key: cell(line, row, key, convert) for key, convert in (
        ("name", _text), ("resident_id", _text), ("relation", _choice(RELATION_ZH, Relation, RELATION_CHOICES)),
        ("birth_date", _day))}) for line, row in members]
    people_ok = []
    for (line, person), (_line, row) in zip(people, members, strict=True):
        if None in person.values():
            continue
        try:
            people_ok.append(Member(**person))
        except ValidationError as exc:  # each member on its own, so an error names its own line
            problems.extend(_pydantic_problem(e, line, row) for e in exc.errors(include_url=False)[:5])
    if problems:
        raise RowProblems(problems)
    try:
        return HouseholdRegistered(
            household_id=household_id, programme_year=fields["programme_year"], township=fields["township"],
            village=head.get("village") or None, category=fields["category"], payer=fields["payer"],
            payer_name=head.get("payer_name") or None, units=fields["units"], members=people_ok,
            paid_on=fields["paid_on"], renewal=head.get("renewal", "").lower() in YES,
        )
    except ValidationError as exc:
        raise RowProblems([_pydantic_problem(e, first_line, head) for e in exc.errors(include_url=False)[:5]]) from None


def _text(value: str) -> str:
    if not value.strip():
        raise ValueError("不能为空")
    return value


def _integer(value: str) -> int:
    if not value.strip().isdigit():
        raise ValueError("不是整数" if value.strip() else "不能为空")
    return int(value)


def _day(value: str) -> date:
    if not value.strip():
        raise ValueError("不能为空")
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("不是有效日期") from None


def _choice(words: dict[str, str], kind: Any, choices: list[str]) -> Any:
    def convert(value: str) -> Any:
        try:
            return kind(words.get(value, value))
        except ValueError:
            raise ValueError(f"须为{'、'.join(choices)}之一" if value else "不能为空") from None
    return convert


# pydantic's checks that a roster can still fail once every cell has the right kind, in Chinese.
PYDANTIC_ZH = {"string_too_short": "不能为空", "string_too_long": "太长", "greater_than_equal": "太小",
               "less_than_equal": "太大", "too_short": "至少一行", "too_long": "行数太多"}


def _pydantic_problem(error: Any, line: int, row: dict[str, str]) -> tuple[int, str]:
    key = str(error["loc"][0]) if error["loc"] else ""
    if key == "resident_id" and error["type"] == "string_pattern_mismatch":
        message = "须为 18 位身份证号（17 位数字加一位数字或 X）"
    elif error["type"] == "string_pattern_mismatch":
        message = "含不允许的字符"
    else:
        message = PYDANTIC_ZH.get(error["type"], "不符合要求")
    return line, say(line, HEADING.get(key, key or "整户"), message, row.get(key, ""))


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


TEMPLATE_SUFFIXES = (".xlsx", ".csv")
TEMPLATE_DATA_ROWS = 2000  # rows of the data sheet that get the dropdowns


def template_notes(townships: list[str] | None = None) -> list[tuple[str, str]]:
    """The 说明 sheet: each column with what it takes."""
    return [
        ("投保年度", "四位年份，如 2024"),
        ("户编号", "本乡镇内每户唯一；同一户的每名成员各占一行，户编号相同"),
        ("乡镇", "、".join(townships) if townships else "已登记的乡镇名称或代码"),
        ("村", "村名（可空）"),
        ("类别", "、".join(CATEGORY_CHOICES)),
        ("缴费方（投保方式）", "、".join(PAYER_CHOICES) + "（也可写 政府投保、单位投保、自主投保）"),
        ("缴费单位", "缴费方为单位时填单位名称（可空）"),
        ("份数", "整数，默认 1"),
        ("缴费日期、出生日期", DATE_FORMAT),
        ("续保", "是 或 否"),
        ("姓名", "成员姓名"),
        ("身份证号", "18 位，末位可为 X"),
        ("与户主关系", "、".join(RELATION_CHOICES) + "（也可写 本人、妻子、丈夫、儿子、女儿）"),
    ]


def write_template(path: Path, townships: list[str] | None = None) -> None:
    """An empty roster in the layout `guanhuai publish` reads. XLSX: the data sheet (headings only,
    dropdowns for 类别, 缴费方, 与户主关系 and, given the registered townships, 乡镇), a 示例 sheet
    with a filled-in household and a 说明 sheet listing what each column takes. CSV: the headings."""
    headings = list(COLUMNS)
    if path.suffix.lower() not in TEMPLATE_SUFFIXES:
        raise ValueError(f"{path.name}：模板只能写成 .xlsx 或 .csv / a template is .xlsx or .csv")
    if path.suffix.lower() == ".csv":
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            csv.writer(handle).writerow(headings)
        return
    import xlsxwriter

    book = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False})
    bold = book.add_format({"bold": True, "bg_color": "#DDEBF7", "border": 1})
    text = book.add_format({"num_format": "@"})  # ID numbers and household numbers stay text
    data, example, notes = (book.add_worksheet(name) for name in ("花名册", "示例", "说明"))
    for sheet in (data, example):
        for col, heading in enumerate(headings):
            sheet.write_string(0, col, heading, bold)
            sheet.set_column(col, col, 20 if heading == "身份证号" else 14, text if heading in ("户编号", "身份证号") else None)
        sheet.freeze_panes(1, 0)
    for r, row in enumerate(TEMPLATE_ROWS, start=1):
        for col, value in enumerate(row):
            example.write_string(r, col, value)
    notes.write_string(0, 0, "列", bold)
    notes.write_string(0, 1, "填写说明与允许的值", bold)
    notes.set_column(0, 0, 20)
    notes.set_column(1, 1, 90)
    for r, (column, note) in enumerate(template_notes(townships), start=1):
        notes.write_string(r, 0, column)
        notes.write_string(r, 1, note)
    # Dropdowns: a list in the cell rule when short, else a range of the 说明 sheet (a rule's own
    # list is limited to 255 characters).
    lists = {"类别": CATEGORY_CHOICES, "缴费方": PAYER_CHOICES, "与户主关系": RELATION_CHOICES}
    if townships:
        lists["乡镇"] = townships
    spare = 3  # 说明 columns D onwards hold the long lists
    for heading, values in lists.items():
        col = headings.index(heading)
        if len(",".join(values)) <= 255:
            source: Any = values
        else:
            notes.write_string(0, spare, heading, bold)
            for r, value in enumerate(values, start=1):
                notes.write_string(r, spare, value)
            letter = chr(ord("A") + spare)
            source, spare = f"='说明'!${letter}$2:${letter}${len(values) + 1}", spare + 1
        data.data_validation(1, col, TEMPLATE_DATA_ROWS, col, {
            "validate": "list", "source": source, "error_title": heading,
            "error_message": f"{heading}须从下拉列表中选择（见“说明”页）"})
    data.activate()
    book.close()


async def registered_townships(db_url: str) -> list[str]:
    """The names of the townships registered in enrollment (its enrollment_areas table), by code;
    empty when the database has none."""
    from sqlalchemy import select

    from services.enrollment.tables import areas
    from shared.events.store import EventStore

    store = await EventStore.open(db_url, create=False)
    try:
        query = select(areas.c.name).where(areas.c.level == "township").order_by(areas.c.code)
        return await store.read(lambda conn: list(dict.fromkeys(r[0] for r in conn.execute(query))))
    finally:
        await store.close()
