"""Programme inputs as county and insurer systems would send them."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta

from guanhuai.simulate import Area, registration_messages
from services.enrollment.decider import policy_number
from shared.domain.calendar import CST
from shared.events import EventMessage
from shared.events.claims import ClaimKind, ClaimReported
from shared.events.enrollment import HouseholdCategory, HouseholdRegistered
from shared.events.subsidy import SubsidyLine, SubsidyPlanPublished

TOWNS = [Area("chengguan", "350421"), Area("xuefeng", "350422")]


def plan(year: int = 2024, head_cap: int = 10_000, plan_id: str = "HT-2024") -> EventMessage:
    payload = SubsidyPlanPublished(
        plan_id=plan_id, programme_year=year, insurer="中国人寿红塔区支公司",
        lines=[SubsidyLine(code="special", label="计生特殊家庭", categories=[HouseholdCategory.special_family],
                           rate_fen=4000, head_cap=head_cap, budget_fen=head_cap * 4000)],
    )
    return EventMessage.new(payload, source="county-test", occurred_at=datetime(year, 1, 5, 9, tzinfo=CST))


def subsidised_persons(registrations: list[EventMessage], rate_fen: int = 4000) -> int:
    """How many persons :func:`plan` subsidises among ``registrations``: every member of a
    government-paid household, until the policy's premium (100 yuan a unit) is covered."""
    return sum(min(len(r.payload.members), r.payload.units * 10_000 // rate_fen)
               for r in registrations if r.payload.payer == "government")


def households(count: int, year: int = 2024, seed: int = 1) -> list[EventMessage]:
    return list(registration_messages(random.Random(seed), count, year=year, townships=TOWNS, source="county-test"))


def claim(registration: EventMessage, kind: ClaimKind, claim_id: str, **figures: object) -> EventMessage:
    reg = registration.payload
    assert isinstance(reg, HouseholdRegistered)
    accident = reg.paid_on + timedelta(days=30)
    payload = ClaimReported(
        claim_id=claim_id, policy_number=policy_number(reg), resident_id=reg.members[0].resident_id,
        accident_date=accident, reported_on=accident + timedelta(days=2), kind=kind,
        outcome_date=None if kind is ClaimKind.medical else accident + timedelta(days=1), **figures,  # type: ignore[arg-type]
    )
    return EventMessage.new(payload, source="insurer-test",
                            occurred_at=datetime.combine(accident + timedelta(days=2), datetime.min.time(), CST))


def medical(registration: EventMessage, claim_id: str, expenses_fen: int = 500_000) -> EventMessage:
    return claim(registration, ClaimKind.medical, claim_id, expenses_fen=expenses_fen, social_insurance_paid_fen=200_000,
                 deductible_fen=10_000, payment_ratio="0.8")


def unknown_policy_claim(claim_id: str, year: int = 2024) -> EventMessage:
    payload = ClaimReported(claim_id=claim_id, policy_number=f"P{year}-nowhere-0", resident_id="11010519491231002X",
                            accident_date=date(year, 5, 1), reported_on=date(year, 5, 2), kind=ClaimKind.death,
                            outcome_date=date(year, 5, 1))
    return EventMessage.new(payload, source="insurer-test")
