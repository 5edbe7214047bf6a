"""The reporting projection, a pure function of the log: events in, township/year figures out.

The same code builds the live read model (event by event, from NATS), the rebuild (from the log
alone) and reports as of a date or as known at a time (from a filtered read of the log), so the
three cannot disagree.

Definitions (stated, so that a reader can check them):
* a policy counts in its programme year (投保年度) and its township;
* completion rate = policies / target; by payer, government-paid policies are those paid by the
  township or by an agency (the 政府投保 column: Mingxi's 机关 row is all agency-paid), and
  self-paid policies (自主投保) are those the family paid;
* loss ratio = claims paid (yuan) / premium (yuan) for the same programme year, township and
  cut-off; reported as the two figures and their ratio;
* claims are counted in the programme year and township of the policy they are made on.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime

from shared.domain.calendar import CST
from shared.events import RecordedEvent
from shared.events.claims import ClaimPaid, ClaimRejected, ClaimReported
from shared.events.enrollment import HouseholdRegistered, HouseholdRejected, Payer, PolicyIssued
from shared.events.programme import AreaRegistered, TownshipTargetSet
from shared.events.subsidy import SubsidyApproved, SubsidyDisbursed

UNKNOWN = "(unknown)"


@dataclass
class TownshipYear:
    """One row of ``report_township_year``: every counter is a plain integer (money in fen)."""

    programme_year: int
    township: str
    target_total: int = 0
    target_government: int = 0
    target_self: int = 0
    registrations: int = 0
    registrations_rejected: int = 0
    policies: int = 0
    policies_government: int = 0
    policies_agency: int = 0
    policies_self: int = 0
    insured_persons: int = 0
    premium_fen: int = 0
    subsidy_persons: int = 0
    subsidy_fen: int = 0
    claims_reported: int = 0
    claims_rejected: int = 0
    claims_paid: int = 0
    claims_paid_fen: int = 0
    death_paid: int = 0
    death_paid_fen: int = 0
    disability_paid: int = 0
    disability_paid_fen: int = 0
    medical_paid: int = 0
    medical_paid_fen: int = 0


COUNTERS = [f.name for f in fields(TownshipYear) if f.name not in ("programme_year", "township")]


@dataclass
class PolicyRef:
    programme_year: int
    township: str


@dataclass
class ReportState:
    townships: dict[tuple[int, str], TownshipYear] = field(default_factory=dict)
    rejections: dict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))  # (year, town, reason)
    subsidy_lines: dict[tuple[int, str, str], list[int]] = field(default_factory=dict)  # (year, town, line) -> [persons, fen]
    monthly: dict[tuple[int, str, int], list[int]] = field(default_factory=dict)  # (year, town, month) -> [policies, premium, claims paid fen]
    disbursed: dict[tuple[int, str], list[int]] = field(default_factory=dict)  # (year, plan) -> [persons, fen]
    areas: dict[str, tuple[str, str, str | None, int]] = field(default_factory=dict)  # code -> (name, level, parent, position)
    policies: dict[str, PolicyRef] = field(default_factory=dict)
    claims: dict[str, tuple[int, str]] = field(default_factory=dict)  # claim id -> (year, township)
    position: int = 0
    touched: set[tuple[str, tuple]] = field(default_factory=set)  # rows changed since the last save

    def row(self, year: int, township: str) -> TownshipYear:
        key = (year, township)
        row = self.townships.get(key)
        if row is None:
            row = self.townships[key] = TownshipYear(year, township)
        self.touched.add(("township", key))
        return row

    def month(self, year: int, township: str, when: datetime) -> list[int]:
        """The monthly row; months are counted from January of the programme year (CST), so
        January of the next year is month 13."""
        local = when.astimezone(CST)
        key = (year, township, (local.year - year) * 12 + local.month)
        self.touched.add(("monthly", key))
        return self.monthly.setdefault(key, [0, 0, 0])

    def claim_row(self, claim_id: str, policy_number: str, fallback_year: int) -> TownshipYear:
        """Claims count where their policy is; a claim on an unknown policy counts in the
        county's "(unknown)" row of the accident's year."""
        where = self.claims.get(claim_id)
        if where is None:
            ref = self.policies.get(policy_number)
            where = (ref.programme_year, ref.township) if ref else (fallback_year, UNKNOWN)
            self.claims[claim_id] = where
            self.touched.add(("claim", (claim_id,)))
        return self.row(*where)


def apply(state: ReportState, event: RecordedEvent) -> None:
    """Fold one recorded event into the report (in place). Events are applied once each, in log
    order; anything already applied (position <= state.position) is ignored."""
    if event.position <= state.position:
        return
    state.position = event.position
    p = event.payload
    match p:
        case AreaRegistered():
            state.areas[p.code] = (p.name, p.level.value, p.parent_code, event.position)
            state.touched.add(("area", (p.code,)))
        case TownshipTargetSet():
            row = state.row(p.programme_year, p.township)
            row.target_total, row.target_government, row.target_self = p.target_total, p.target_government, p.target_self
        case HouseholdRegistered():
            state.row(p.programme_year, p.township).registrations += 1
        case HouseholdRejected():
            state.row(p.programme_year, p.township).registrations_rejected += 1
            for reason in p.reasons:
                state.rejections[(p.programme_year, p.township, reason)] += 1
                state.touched.add(("rejection", (p.programme_year, p.township, reason)))
        case PolicyIssued():
            row = state.row(p.programme_year, p.township)
            row.policies += 1
            if p.payer is Payer.government:
                row.policies_government += 1
            elif p.payer is Payer.agency:
                row.policies_agency += 1
            else:
                row.policies_self += 1
            row.insured_persons += len(p.insured)
            row.premium_fen += p.premium_fen
            month = state.month(p.programme_year, p.township, event.occurred_at)
            month[0] += 1
            month[1] += p.premium_fen
            state.policies[p.policy_number] = PolicyRef(p.programme_year, p.township)
            state.touched.add(("policy", (p.policy_number,)))
        case SubsidyApproved():
            row = state.row(p.programme_year, p.township)
            row.subsidy_persons += 1
            row.subsidy_fen += p.amount_fen
            line = state.subsidy_lines.setdefault((p.programme_year, p.township, p.line), [0, 0])
            line[0] += 1
            line[1] += p.amount_fen
            state.touched.add(("subsidy_line", (p.programme_year, p.township, p.line)))
        case SubsidyDisbursed():
            state.disbursed[(p.programme_year, p.plan_id)] = [p.persons, p.amount_fen]
            state.touched.add(("disbursed", (p.programme_year, p.plan_id)))
        case ClaimReported():
            state.claim_row(p.claim_id, p.policy_number, p.accident_date.year).claims_reported += 1
        case ClaimRejected():
            state.claim_row(p.claim_id, p.policy_number, event.occurred_at.astimezone(CST).year).claims_rejected += 1
        case ClaimPaid():
            row = state.row(p.programme_year, p.township)
            row.claims_paid += 1
            row.claims_paid_fen += p.amount_fen
            kind = p.kind.value
            setattr(row, f"{kind}_paid", getattr(row, f"{kind}_paid") + 1)
            setattr(row, f"{kind}_paid_fen", getattr(row, f"{kind}_paid_fen") + p.amount_fen)
            state.month(p.programme_year, p.township, event.occurred_at)[2] += p.amount_fen
        case _:
            pass
