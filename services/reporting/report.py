"""Reports for people and tools: a programme year's township rows and the county total.

Every figure comes from a :class:`ReportState` (the read model, or the projection of a filtered
log), so a report "as of 2023-09-30" and the live one are computed the same way.
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


def rate(numerator: int, denominator: int) -> Decimal | None:
    """A ratio to four decimals (half up), or None when there is nothing to divide by."""
    if denominator == 0:
        return None
    return (Decimal(numerator) / Decimal(denominator)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def percent(value: Decimal | None) -> str:
    return "—" if value is None else f"{value * 100:.2f}%"


@dataclass
class ReportRow:
    figures: TownshipYear
    township_name: str

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
        return data

    def cell(self, key: str) -> str:
        f = self.figures
        if key == "township_name":
            return self.township_name
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

    def as_json(self) -> dict[str, Any]:
        return {
            "programme_year": self.programme_year,
            "basis": self.basis,
            "log_head": self.log_head,
            "loss_ratio_rule": LOSS_RATIO_RULE,
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
                   "loss_ratio_numerator_fen", "loss_ratio_denominator_fen", "log_head"]
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


def build_report(state: ReportState, year: int, *, township: str | None = None, basis: str = "read model") -> Report:
    """The year's rows in the order the county listed its townships, then any others."""
    areas = state.areas
    order = {code: pos for code, (_name, _level, _parent, pos) in areas.items()}
    # An "(unknown)" row that is all zero (its deferred claims since decided) is no row.
    keys = [k for k in state.townships if k[0] == year
            and (k[1] != UNKNOWN or any(getattr(state.townships[k], c) for c in COUNTERS))]
    keys.sort(key=lambda k: (order.get(k[1], 10**18), k[1]))
    if township is not None:
        wanted = {code for code, (name, *_rest) in areas.items() if township in (code, name)} or {township}
        keys = [k for k in keys if k[1] in wanted]
    rows = [ReportRow(state.townships[k], _name(areas, k[1])) for k in keys]
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
    return Report(
        programme_year=year, rows=rows, total=ReportRow(total, "合计"), basis=basis,
        disbursed=[{"plan_id": plan, "persons": p, "amount_fen": fen}
                   for (y, plan), (p, fen) in sorted(state.disbursed.items()) if y == year] if township is None else [],
        rejections=rejections, subsidy_lines=lines,
        monthly=[{"month": m, "policies": v[0], "premium_fen": v[1], "claims_paid_fen": v[2]} for m, v in sorted(monthly.items())],
    )


def _name(areas: dict[str, tuple[str, str, str | None, int]], code: str) -> str:
    if code == UNKNOWN:
        return "（保单或地区不明）"  # claims on an unknown policy, households naming an unknown area
    return areas[code][0] if code in areas else code
