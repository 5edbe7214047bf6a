"""Reports for people and tools: a programme year's rows at a level of the area tree (townships
by default) and their total.

Every figure comes from a :class:`ReportState` (the read model, or the projection of a filtered
log), so a report "as of 2023-09-30" and the live one are computed the same way.

Roll-ups (issue #21) are computed here, at read time, from the township rows and the area tree
(report_areas): a row of a county, city or province is the sum of the township rows below it,
counter by counter (money in fen), so a parent row is exactly the sum of its children rows and
the total is exactly the sum of the rows at any level. A target set on an area above the
townships (``TownshipTargetSet`` naming that area, read from the log beside the report: see
services/reporting/rollup.py) is that area's own target, reported beside the sum of its townships'
targets (``area_target_*``); it is never added into a sum.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from services.reporting.projection import COUNTERS, UNKNOWN, ReportState, TownshipYear
from services.reporting.safe import spreadsheet_cell
from shared.domain.areas import LEVELS, Area, AreaTree, Unresolved, level_rank
from shared.domain.money import yuan

LOSS_RATIO_RULE = "loss ratio = claims paid (yuan) / premium (yuan), same programme year, township and cut-off"
LOSS_RATIO_RULE_ZH = "赔付率 = 赔付金额 ÷ 保费（同一投保年度、同一截止日期）"

# Columns of JSON/CSV output: the read model's names, then the derived figures.
DERIVED = ["completion_rate", "completion_rate_government", "completion_rate_self", "loss_ratio"]

# The table and XLSX as county staff write them.
HEADINGS_ZH: list[tuple[str, str]] = [
    ("township_name", "乡镇"),
    ("target_total", "指导任务数"),
    ("target_government", "政府投保任务数"),
    ("target_self", "自主投保任务数"),
    ("policies", "已投保户数"),
    ("policies_government_all", "政府投保"),
    ("policies_self", "自主投保"),
    ("completion_rate", "完成率"),
    ("completion_rate_government", "政府投保完成率"),
    ("completion_rate_self", "自主投保完成率"),
    ("insured_persons", "参保人数"),
    ("premium_yuan", "保费(元)"),
    ("registrations_rejected", "未承保户数"),
    ("subsidy_persons", "补助人数"),
    ("subsidy_yuan", "补助金额(元)"),
    ("claims_reported", "报案件数"),
    ("claims_paid", "赔付件数"),
    ("claims_paid_yuan", "赔付金额(元)"),
    ("claims_rejected", "拒赔件数"),
    ("claims_deferred", "待保单案件数"),
    ("loss_ratio", "赔付率"),
]


LEVEL_ZH = {"province": "省", "city": "市", "county": "县/区", "township": "乡镇", "village": "村"}
AREA_TARGET_ZH = ("area_target_total", "本级指导任务数")  # an area's own target, beside the sum of its townships'


def headings_zh(report: Report) -> list[tuple[str, str]]:
    """The Chinese headings of a report: the first names the level of its rows (乡镇, 县/区, 市, 省);
    a report with an area's own target has a column for it after the summed target."""
    headings = [("township_name", LEVEL_ZH.get(report.level, "地区")), *HEADINGS_ZH[1:]]
    if any(r.area_target for r in [*report.rows, report.total]):
        headings.insert(2, AREA_TARGET_ZH)
    return headings


def rate(numerator: int, denominator: int) -> Decimal | None:
    """A ratio to four decimals (half up), or None when there is nothing to divide by."""
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def percent(value: Decimal | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


# A rolled-up row for the townships that lie in no area of the level asked for (an unregistered
# township, the "(unknown)" row, a county that names no city): kept, so that the rows still add
# up to the whole.
OUTSIDE = "(outside)"
TARGET_PARTS = ("target_total", "target_government", "target_self")


class AreaProblem(ValueError):
    """An area or level a report cannot be given for (unknown, ambiguous, or below the area)."""


@dataclass
class ReportRow:
    figures: TownshipYear
    township_name: str  # the area's name at any level (the column keeps its name for tools)
    level: str = "township"
    area_target: tuple[int, int, int] | None = None  # the area's own target (total, government, self), if one was set

    @property
    def policies_government_all(self) -> int:
        """政府投保: paid by the township or by an agency."""
        return self.figures.policies_government + self.figures.policies_agency

    def derived(self) -> dict[str, Decimal | None]:
        f = self.figures
        return {
            "completion_rate": rate(f.policies, f.target_total),
            "completion_rate_government": rate(self.policies_government_all, f.target_government),
            "completion_rate_self": rate(f.policies_self, f.target_self),
            "loss_ratio": rate(f.claims_paid_fen, f.premium_fen),
        }

    def record(self) -> dict[str, Any]:
        """Read-model column names and values (money in fen), plus the derived ratios."""
        data = asdict(self.figures)
        data["township_name"] = self.township_name
        for key, value in self.derived().items():
            data[key] = None if value is None else float(value)
        data["loss_ratio_numerator_fen"] = self.figures.claims_paid_fen
        data["loss_ratio_denominator_fen"] = self.figures.premium_fen
        data["level"] = self.level
        for part, value in zip(TARGET_PARTS, self.area_target or (None, None, None), strict=True):
            data[f"area_{part}"] = value  # beside the sum of its townships' targets, never in it
        return data

    def cell(self, key: str) -> str:
        f = self.figures
        if key == "township_name":
            return self.township_name
        if key == AREA_TARGET_ZH[0]:
            return "" if self.area_target is None else str(self.area_target[0])
        if key in DERIVED:
            return percent(self.derived()[key])
        if key == "policies_government_all":
            return str(self.policies_government_all)
        if key.endswith("_yuan"):
            return yuan(getattr(f, key.replace("_yuan", "_fen")))
        return str(getattr(f, key))


@dataclass
class Report:
    programme_year: int
    rows: list[ReportRow]
    total: ReportRow
    basis: str
    disbursed: list[dict[str, Any]] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)
    subsidy_lines: dict[str, dict[str, int]] = field(default_factory=dict)
    monthly: list[dict[str, Any]] = field(default_factory=list)
    log_head: str | None = None  # POSITION:HASH of the log prefix the figures come from (audit.log_head)
    level: str = "township"  # the level of the rows
    area: dict[str, str] | None = None  # the area reported on (code, name, level); None: all areas
    state: ReportState | None = field(default=None, repr=False, compare=False)  # what the figures were computed from

    def as_json(self) -> dict[str, Any]:
        return {
            "programme_year": self.programme_year,
            "basis": self.basis,
            "log_head": self.log_head,
            "loss_ratio_rule": LOSS_RATIO_RULE,
            "level": self.level,
            "area": self.area,
            # the rows at the level asked for ("townships": the key tools have read since the first version)
            "townships": [r.record() for r in self.rows],
            "total": self.total.record(),
            "rejections_by_reason": self.rejections,
            "subsidy_by_line": self.subsidy_lines,
            "disbursements": self.disbursed,
            "monthly": self.monthly,
        }

    def csv(self) -> str:
        """One line per township, then the total; the last column names the log head on every line
        (so each line read alone still says where it came from). Text cells are spreadsheet-safe."""
        out = io.StringIO()
        columns = ["programme_year", "township", "township_name", *COUNTERS, *DERIVED,
                   "loss_ratio_numerator_fen", "loss_ratio_denominator_fen", "level",
                   *(f"area_{part}" for part in TARGET_PARTS), "log_head"]
        # CRLF (RFC 4180): the csv module then quotes a cell holding a bare CR too, which with "\n"
        # it would write raw, and a spreadsheet would start a new row there.
        writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        for row in [*self.rows, self.total]:
            record = {**row.record(), "log_head": self.log_head}
            writer.writerow({k: spreadsheet_cell(v) for k, v in record.items()})
        return out.getvalue()

    def json_text(self) -> str:
        return json.dumps(self.as_json(), ensure_ascii=False, indent=2)


def area_tree(state: ReportState) -> AreaTree:
    return AreaTree.of(Area(code, name, level, parent, state.area_aliases.get(code, ()))
                       for code, (name, level, parent, _position) in state.areas.items())


def scope(state: ReportState, area: str | None, level: str | None) -> tuple[str | None, str]:
    """The area code ``area`` names (code, name or alias, any level) and the level of the rows:
    by default the level just below the area (townships for a township), or townships for all
    areas. Raises :class:`AreaProblem` for an area no one registered, a name two areas share, a
    level below the townships (villages have no figures of their own) or above the area."""
    code: str | None = None
    if area is not None:
        found = area_tree(state).find(area)
        if isinstance(found, Unresolved):
            raise AreaProblem(found.detail)
        code = found
    own = state.areas[code][1] if code is not None else None
    if level is None:
        level = "township" if own is None else LEVELS[min(level_rank(own) + 1, level_rank("township"))]
    try:
        rank = level_rank(level)
    except ValueError as exc:
        raise AreaProblem(str(exc)) from None
    if rank > level_rank("township"):
        raise AreaProblem(f"层级“{level}”没有数据 / level {level!r}: reports go down to townships (villages have no figures of their own)")
    if own is not None and rank < level_rank(own):
        raise AreaProblem(f"“{area}”是{own}，不能按{level}汇总 / {area!r} is a {own}: its rows can be at its level or below, not {level}")
    return code, level


def build_report(state: ReportState, year: int, *, township: str | None = None, basis: str = "read model",
                 area: str | None = None, level: str | None = None,
                 area_targets: dict[str, tuple[int, int, int]] | None = None) -> Report:
    """The year's rows at ``level`` (townships by default) within ``area`` (all areas by default),
    in the order the areas were registered (a county's townships as it listed them), then any
    others. ``area_targets``: the own targets of areas above the townships, by area code."""
    areas = state.areas
    code, level = scope(state, area, level)
    tree = area_tree(state)
    order = {c: pos for c, (_name, _level, _parent, pos) in areas.items()}
    # An "(unknown)" row that is all zero (its deferred claims since decided) is no row.
    keys = [k for k in state.townships if k[0] == year
            and (k[1] != UNKNOWN or any(getattr(state.townships[k], c) for c in COUNTERS))]
    keys.sort(key=lambda k: (order.get(k[1], 10**18), k[1]))
    if code is not None:
        keys = [k for k in keys if tree.ancestor_at(k[1], areas[code][1]) == code]
    if township is not None:
        wanted = {c for c, (name, *_rest) in areas.items() if township in (c, name)} or {township}
        keys = [k for k in keys if k[1] in wanted]
    rows = [ReportRow(state.townships[k], _name(areas, k[1])) for k in keys]
    if level != "township":
        rows = roll_up(rows, tree, year, level, order)
    for row in rows:
        row.area_target = (area_targets or {}).get(row.figures.township) if row.level != "township" else None
    total = TownshipYear(year, "total")
    for r in rows:
        for c in COUNTERS:
            setattr(total, c, getattr(total, c) + getattr(r.figures, c))
    towns = {k[1] for k in keys}
    rejections: dict[str, int] = {}
    for (y, town, reason), n in sorted(state.rejections.items()):
        if y == year and town in towns:
            rejections[reason] = rejections.get(reason, 0) + n
    lines: dict[str, dict[str, int]] = {}
    for (y, town, line), (persons, fen) in sorted(state.subsidy_lines.items()):
        if y == year and town in towns:
            entry = lines.setdefault(line, {"persons": 0, "amount_fen": 0})
            entry["persons"] += persons
            entry["amount_fen"] += fen
    monthly: dict[int, list[int]] = {}
    for (y, town, month), values in state.monthly.items():
        if y == year and town in towns:
            acc = monthly.setdefault(month, [0, 0, 0])
            for i, v in enumerate(values):
                acc[i] += v
    whole = township is None and code is None
    total_row = ReportRow(total, "合计" if code is None else f"合计（{areas[code][0]}）", "all" if code is None else areas[code][1],
                          (area_targets or {}).get(code) if code is not None else None)
    return Report(
        programme_year=year, rows=rows, total=total_row, basis=basis,
        level=level, area=None if code is None else {"code": code, "name": areas[code][0], "level": areas[code][1]},
        state=state,
        disbursed=[{"plan_id": plan, "persons": p, "amount_fen": fen}
                   for (y, plan), (p, fen) in sorted(state.disbursed.items()) if y == year] if whole else [],
        rejections=rejections, subsidy_lines=lines,
        monthly=[{"month": m, "policies": v[0], "premium_fen": v[1], "claims_paid_fen": v[2]} for m, v in sorted(monthly.items())],
    )


def roll_up(townships: list[ReportRow], tree: AreaTree, year: int, level: str, order: dict[str, int]) -> list[ReportRow]:
    """One row per area of ``level`` that has townships among ``townships``: each counter the sum
    of theirs (integers: money in fen, so the sums are exact); the townships in no area of the
    level make one row of their own (OUTSIDE), so the rows add up to the same whole."""
    rolled: dict[str, TownshipYear] = {}
    for row in townships:
        key = tree.ancestor_at(row.figures.township, level) or OUTSIDE
        into = rolled.get(key)
        if into is None:
            into = rolled[key] = TownshipYear(year, key)
        for c in COUNTERS:
            setattr(into, c, getattr(into, c) + getattr(row.figures, c))
    keys = sorted(rolled, key=lambda k: (k == OUTSIDE, order.get(k, 10**18), k))
    return [ReportRow(rolled[k], "（未归属地区）" if k == OUTSIDE else tree.name_of(k), level) for k in keys]


def _name(areas: dict[str, tuple[str, str, str | None, int]], code: str) -> str:
    if code == UNKNOWN:
        return "（保单或地区不明）"  # claims on an unknown policy, households naming an unknown area
    return areas[code][0] if code in areas else code
