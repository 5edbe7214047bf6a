"""The reporting projection, a pure function of the log: events in, township/year figures out.

The same code builds the live read model (event by event, from NATS), the rebuild (from the log
alone) and reports as of a date or as known at a time (from a filtered read of the log), so the
three cannot disagree.

Definitions (stated, so that a reader can check them):
* a policy counts in its programme year (投保年度) and its township: the area code enrollment
  resolved and recorded on it (a township may be sent by code, registered name or alias);
* a registration counts when decided (policy or rejection), in the township recorded on its outcome;
  one rejected ``unknown_area`` names no township and counts in the "(unknown)" row of its year;
* a corrected policy (``PolicyAmended``) moves with its registration: counted out where and as it
  counted before (its ``previous`` figures), counted in as it now stands, both in the month it was
  first issued; a cancelled policy (``PolicyCancelled``) is counted out;
* a target counts for the township it names (code, registered name or alias, as enrollment reads
  them: shared/domain/areas.py); one naming no registered township counts in no row;
* completion rate = policies / target; by payer, government-paid policies are those paid by the
  township or by an agency (the 政府投保 column: Mingxi's 机关 row is all agency-paid), and
  self-paid policies (自主投保) are those the family paid;
* loss ratio = claims paid (yuan) / premium (yuan) for the same programme year, township and
  cut-off; reported as the two figures and their ratio;
* claims are counted when decided, in the programme year and township of the policy they are
  made on (a claim on an unknown policy: the "(unknown)" row of the year it was decided);
* deferred claims (claims_deferred) are those waiting for their policy, not decided yet: counted in
  the "(unknown)" row of the year (CST) they were deferred, as their township is not known yet,
  and counted out there when decided.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields
from datetime import datetime

from services.reporting.views import (
    AreaView,
    ClaimDeferredView,
    ClaimPaidView,
    ClaimRejectedView,
    DisbursementView,
    Fact,
    PolicyAmendedView,
    PolicyCancelledView,
    PolicyView,
    RejectionView,
    SubsidyView,
    TargetView,
)
from shared.domain.areas import Area, Areas, Unresolved
from shared.domain.calendar import CST
from shared.events.enrollment import Payer

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
    claims_deferred: int = 0


COUNTERS = [f.name for f in fields(TownshipYear) if f.name not in ("programme_year", "township")]


@dataclass
class ReportState:
    townships: dict[tuple[int, str], TownshipYear] = field(default_factory=dict)
    rejections: dict[tuple[int, str, str], int] = field(default_factory=lambda: defaultdict(int))  # (year, town, reason)
    subsidy_lines: dict[tuple[int, str, str], list[int]] = field(default_factory=dict)  # (year, town, line) -> [persons, fen]
    monthly: dict[tuple[int, str, int], list[int]] = field(default_factory=dict)  # (year, town, month) -> [policies, premium, claims paid fen]
    disbursed: dict[tuple[int, str], list[int]] = field(default_factory=dict)  # (year, plan) -> [persons, fen]
    areas: dict[str, tuple[str, str, str | None, int]] = field(default_factory=dict)  # code -> (name, level, parent, position)
    area_aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # code -> its other names
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


def apply(state: ReportState, fact: Fact) -> None:
    """Fold one event into the report (in place). Events are applied once each, in log order;
    anything already applied (position <= state.position) is ignored. Claims are counted when
    decided (each reported claim is paid or rejected as it is recorded), in the programme year
    and township of their policy; a claim on an unknown policy counts in the "(unknown)" row of
    the year it was decided."""
    if fact.position <= state.position:
        return
    state.position = fact.position
    _APPLY[type(fact.data)](state, fact.data, fact)  # type: ignore[arg-type]


def _area(state: ReportState, d: AreaView, fact: Fact) -> None:
    state.areas[d.code] = (d.name, d.level, d.parent_code, fact.position)
    state.area_aliases[d.code] = tuple(d.aliases)
    state.touched.add(("area", (d.code,)))


def _target(state: ReportState, d: TargetView, fact: Fact) -> None:
    areas = Areas.of(Area(code, name, level, parent, state.area_aliases.get(code, ()))
                     for code, (name, level, parent, _position) in state.areas.items())
    township = areas.township(d.township)
    if isinstance(township, Unresolved):  # no township of the county: a phantom row would be worse
        return
    row = state.row(d.programme_year, township)
    row.target_total, row.target_government, row.target_self = d.target_total, d.target_government, d.target_self


def _rejection(state: ReportState, d: RejectionView, fact: Fact) -> None:
    township = UNKNOWN if "unknown_area" in d.reasons else d.township  # then the name sent, no area's code
    row = state.row(d.programme_year, township)
    row.registrations += 1
    row.registrations_rejected += 1
    for reason in d.reasons:
        state.rejections[(d.programme_year, township, reason)] += 1
        state.touched.add(("rejection", (d.programme_year, township, reason)))


def _policy(state: ReportState, d: PolicyView, fact: Fact) -> None:
    _count_policy(state, d.programme_year, d.township, d.payer, len(d.insured), d.premium_fen, fact.occurred_at, 1)


def _policy_amended(state: ReportState, d: PolicyAmendedView, fact: Fact) -> None:
    """A corrected policy moves: counted out where and as it counted before (in the month it was
    first issued), counted in as it now stands."""
    was = d.previous
    _count_policy(state, d.programme_year, was.township, was.payer, was.insured_persons, was.premium_fen, was.issued_at, -1)
    _count_policy(state, d.programme_year, d.township, d.payer, len(d.insured), d.premium_fen, was.issued_at, 1)


def _policy_cancelled(state: ReportState, d: PolicyCancelledView, fact: Fact) -> None:
    was = d.previous
    _count_policy(state, d.programme_year, was.township, was.payer, was.insured_persons, was.premium_fen, was.issued_at, -1)


def _count_policy(state: ReportState, year: int, township: str, payer: str, persons: int, premium_fen: int,
                  issued_at: datetime, sign: int) -> None:
    """Count a policy in (``sign`` 1) or out (-1) of its township's row and month."""
    row = state.row(year, township)
    row.registrations += sign
    row.policies += sign
    if payer == Payer.government:
        row.policies_government += sign
    elif payer == Payer.agency:
        row.policies_agency += sign
    else:
        row.policies_self += sign
    row.insured_persons += sign * persons
    row.premium_fen += sign * premium_fen
    month = state.month(year, township, issued_at)
    month[0] += sign
    month[1] += sign * premium_fen


def _subsidy(state: ReportState, d: SubsidyView, fact: Fact) -> None:
    row = state.row(d.programme_year, d.township)
    row.subsidy_persons += 1
    row.subsidy_fen += d.amount_fen
    key = (d.programme_year, d.township, d.line)
    line = state.subsidy_lines.get(key)
    if line is None:
        line = state.subsidy_lines[key] = [0, 0]
    line[0] += 1
    line[1] += d.amount_fen
    state.touched.add(("subsidy_line", key))


def _disbursement(state: ReportState, d: DisbursementView, fact: Fact) -> None:
    state.disbursed[(d.programme_year, d.plan_id)] = [d.persons, d.amount_fen]
    state.touched.add(("disbursed", (d.programme_year, d.plan_id)))


def _claim_paid(state: ReportState, d: ClaimPaidView, fact: Fact) -> None:
    row = state.row(d.programme_year, d.township)
    row.claims_reported += 1
    row.claims_paid += 1
    row.claims_paid_fen += d.amount_fen
    setattr(row, f"{d.kind}_paid", getattr(row, f"{d.kind}_paid") + 1)
    setattr(row, f"{d.kind}_paid_fen", getattr(row, f"{d.kind}_paid_fen") + d.amount_fen)
    state.month(d.programme_year, d.township, fact.occurred_at)[2] += d.amount_fen
    _no_longer_deferred(state, d)


def _claim_rejected(state: ReportState, d: ClaimRejectedView, fact: Fact) -> None:
    if d.programme_year is None or d.township is None:
        row = state.row(fact.occurred_at.astimezone(CST).year, UNKNOWN)
    else:
        row = state.row(d.programme_year, d.township)
    row.claims_reported += 1
    row.claims_rejected += 1
    _no_longer_deferred(state, d)


def _claim_deferred(state: ReportState, d: ClaimDeferredView, fact: Fact) -> None:
    state.row(fact.occurred_at.astimezone(CST).year, UNKNOWN).claims_deferred += 1


def _no_longer_deferred(state: ReportState, d: ClaimPaidView | ClaimRejectedView) -> None:
    if d.deferred_on is not None:  # the decision of a deferred claim names the day (CST) it was deferred
        state.row(d.deferred_on.year, UNKNOWN).claims_deferred -= 1


_APPLY = {
    AreaView: _area, TargetView: _target, RejectionView: _rejection,
    PolicyView: _policy, PolicyAmendedView: _policy_amended, PolicyCancelledView: _policy_cancelled, SubsidyView: _subsidy, DisbursementView: _disbursement, ClaimPaidView: _claim_paid,
    ClaimRejectedView: _claim_rejected, ClaimDeferredView: _claim_deferred,
}
