"""The subsidy rules, as pure functions (no I/O).

A plan (Hongta 2024: 40 yuan/person for 3,200 persons; 50 yuan/person for 444 persons in special
families) has lines; each line covers household categories, pays a rate per insured person, and
stops at its head-count cap or its budget, whichever comes first. A person is subsidised once per
programme year. The subsidies on one policy never add up to more than its premium: a person whose
subsidy would take them above it is rejected ``premium_covered`` (persons are decided in the order
the policy lists them; the premium is the policy's own, from its year's product terms). Policies issued before their year's plan is published are deferred and decided,
in the order they arrived, when it is. Closing a plan yields the lump sum paid to the insurer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from shared.events.enrollment import HouseholdCategory, PolicyIssued
from shared.events.subsidy import (
    LineTotal,
    SubsidyApproved,
    SubsidyDeferred,
    SubsidyDisbursed,
    SubsidyLine,
    SubsidyPlanCloseRequested,
    SubsidyPlanPublished,
    SubsidyPlanRequestRefused,
    SubsidyRejected,
)

# Categories that are never subsidy candidates: no rejection is recorded for them.
NOT_CANDIDATES = {HouseholdCategory.general, HouseholdCategory.agency_staff}

SubsidyEvent = (
    SubsidyApproved | SubsidyRejected | SubsidyDeferred | SubsidyDisbursed | SubsidyPlanPublished | SubsidyPlanRequestRefused
)


@dataclass
class LineUsage:
    persons: int = 0
    amount_fen: int = 0


@dataclass
class PlanState:
    plan: SubsidyPlanPublished
    closed: bool = False
    usage: dict[str, LineUsage] = field(default_factory=dict)

    def line_for(self, category: HouseholdCategory) -> SubsidyLine | None:
        return next((line for line in self.plan.lines if category in line.categories), None)


@dataclass
class SubsidyState:
    plans: dict[str, PlanState] = field(default_factory=dict)
    plan_of_year: dict[int, str] = field(default_factory=dict)
    subsidised: set[tuple[int, str]] = field(default_factory=set)  # (year, resident id)
    deferred: dict[int, list[PolicyIssued]] = field(default_factory=dict)  # year -> policies in arrival order


def decide_policy(policy: PolicyIssued, state: SubsidyState) -> list[SubsidyEvent]:
    if policy.category in NOT_CANDIDATES:
        return []
    plan_id = state.plan_of_year.get(policy.programme_year)
    if plan_id is None:
        return [SubsidyDeferred(policy_number=policy.policy_number, programme_year=policy.programme_year,
                                township=policy.township, persons=len(policy.insured))]
    return _decide_persons(policy, state.plans[plan_id], state)


def _decide_persons(policy: PolicyIssued, plan: PlanState, state: SubsidyState) -> list[SubsidyEvent]:
    """Decide each insured person in turn; the usage seen by the next person includes the
    approvals given to the ones before (a scratch copy, so ``state`` itself is untouched)."""
    out: list[SubsidyEvent] = []
    line = plan.line_for(policy.category)
    usage = LineUsage(**vars(plan.usage.get(line.code, LineUsage()))) if line else LineUsage()
    approved_here: set[str] = set()
    approved_fen = 0  # on this policy
    for person in policy.insured:
        reason = None
        if line is None:
            reason = "not_in_plan"
        elif plan.closed:
            reason = "plan_closed"
        elif (policy.programme_year, person.resident_id) in state.subsidised or person.resident_id in approved_here:
            reason = "already_subsidised"
        elif approved_fen + line.rate_fen > policy.premium_fen:
            reason = "premium_covered"
        elif usage.persons >= line.head_cap:
            reason = "head_cap_reached"
        elif usage.amount_fen + line.rate_fen > line.budget_fen:
            reason = "budget_exhausted"
        if reason is None and line is not None:
            usage.persons += 1
            usage.amount_fen += line.rate_fen
            approved_fen += line.rate_fen
            approved_here.add(person.resident_id)
            out.append(SubsidyApproved(plan_id=plan.plan.plan_id, programme_year=policy.programme_year, line=line.code,
                                       policy_number=policy.policy_number, township=policy.township,
                                       resident_id=person.resident_id, amount_fen=line.rate_fen))
        else:
            out.append(SubsidyRejected(plan_id=plan.plan.plan_id, programme_year=policy.programme_year,
                                       policy_number=policy.policy_number, township=policy.township,
                                       resident_id=person.resident_id, reason=reason or "not_in_plan"))
    return out


def decide_plan(plan: SubsidyPlanPublished, state: SubsidyState) -> list[SubsidyEvent]:
    """A plan as recorded: refused if its year already has one; otherwise the policies of its year
    that were deferred are decided against it, in the order they arrived. The handler folds the
    plan itself into the state (it is in the log already) unless it was refused."""
    if plan.plan_id in state.plans:
        return [SubsidyPlanRequestRefused(plan_id=plan.plan_id, request="publish", reason="plan_exists")]
    if plan.programme_year in state.plan_of_year:
        return [SubsidyPlanRequestRefused(plan_id=plan.plan_id, request="publish", reason="year_has_plan")]
    scratch = SubsidyState(plans=dict(state.plans), plan_of_year=dict(state.plan_of_year),
                           subsidised=set(state.subsidised), deferred={})
    evolve(scratch, plan)
    scratch.plans[plan.plan_id] = PlanState(plan)  # a fresh usage record only this scratch copy sees
    out: list[SubsidyEvent] = []
    for policy in state.deferred.get(plan.programme_year, []):
        decided = _decide_persons(policy, scratch.plans[plan.plan_id], scratch)
        for event in decided:
            evolve(scratch, event)
        out.extend(decided)
    return out


def decide_close(request: SubsidyPlanCloseRequested, state: SubsidyState) -> list[SubsidyEvent]:
    plan = state.plans.get(request.plan_id)
    if plan is None:
        return [SubsidyPlanRequestRefused(plan_id=request.plan_id, request="close", reason="unknown_plan")]
    if plan.closed:
        return []
    totals = [LineTotal(line=line.code, persons=plan.usage.get(line.code, LineUsage()).persons,
                        amount_fen=plan.usage.get(line.code, LineUsage()).amount_fen) for line in plan.plan.lines]
    return [SubsidyDisbursed(plan_id=plan.plan.plan_id, programme_year=plan.plan.programme_year,
                             insurer=plan.plan.insurer, disbursed_on=request.closed_on,
                             persons=sum(t.persons for t in totals), amount_fen=sum(t.amount_fen for t in totals),
                             lines=totals)]


def evolve(state: SubsidyState, event: SubsidyEvent | PolicyIssued) -> SubsidyState:
    """Fold an event into the state (in place; the state is the service's working copy)."""
    match event:
        case SubsidyPlanPublished():
            state.plans[event.plan_id] = PlanState(event)
            state.plan_of_year[event.programme_year] = event.plan_id
            state.deferred.pop(event.programme_year, None)
        case SubsidyApproved():
            usage = state.plans[event.plan_id].usage.setdefault(event.line, LineUsage())
            usage.persons += 1
            usage.amount_fen += event.amount_fen
            state.subsidised.add((event.programme_year, event.resident_id))
        case SubsidyDisbursed():
            state.plans[event.plan_id].closed = True
        case SubsidyRejected() | SubsidyPlanRequestRefused() | SubsidyDeferred():
            pass
    return state


def defer(state: SubsidyState, policy: PolicyIssued) -> SubsidyState:
    """Keep a policy that arrived before its year's plan (after a ``SubsidyDeferred``)."""
    state.deferred.setdefault(policy.programme_year, []).append(policy)
    return state
