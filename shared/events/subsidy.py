"""Events of premium subsidies: the district's plan, per-person approvals, and the lump sum."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from .base import DomainEvent, Fen, FrozenModel, Key, Name
from .enrollment import HouseholdCategory, IdNumber
from .programme import Count, Year
from .reasons import PlanRefusedReason, SubsidyRejectedReason


class SubsidyLine(FrozenModel):
    """One line of a plan: who qualifies, the rate per person, and its head-count and budget caps."""

    code: Name
    label: str = Field(max_length=100, description="as the budget document writes it, e.g. 失独家庭")
    categories: list[HouseholdCategory] = Field(min_length=1)
    rate_fen: Fen
    head_cap: Count
    budget_fen: Fen


class SubsidyPlanPublished(DomainEvent):
    """The district's subsidy budget for a programme year (e.g. Hongta 2024: 40 and 50 yuan/person)."""

    model_config = ConfigDict(json_schema_extra={"$comment": (
        "also refused (invalid_payload), which JSON Schema cannot state: a household category in more "
        "than one line")})
    event_type = "SubsidyPlanPublished"

    plan_id: Key
    programme_year: Year
    insurer: str = Field(min_length=1, max_length=100)
    lines: list[SubsidyLine] = Field(min_length=1)

    @model_validator(mode="after")
    def _categories_once(self) -> SubsidyPlanPublished:
        seen = [c for line in self.lines for c in line.categories]
        if len(seen) != len(set(seen)):
            raise ValueError("a household category may appear in one line of a plan only")
        return self


class SubsidyApproved(DomainEvent):
    event_type = "SubsidyApproved"

    plan_id: Name
    programme_year: Year
    line: Name
    policy_number: Name
    township: Name
    resident_id: IdNumber
    amount_fen: Fen


class SubsidyRejected(DomainEvent):
    event_type = "SubsidyRejected"

    plan_id: Name | None
    programme_year: Year
    policy_number: Name
    township: Name
    resident_id: IdNumber
    reason: SubsidyRejectedReason = Field(description="why this person gets no subsidy (shared/events/reasons.py)")


class SubsidyDeferred(DomainEvent):
    """A policy with subsidy candidates arrived before any plan for its year: it will be decided
    when the plan is published (subsidy work runs January to April, once finance approves)."""

    event_type = "SubsidyDeferred"

    policy_number: Name
    programme_year: Year
    township: Name
    persons: Count


class SubsidyPlanRequestRefused(DomainEvent):
    """A plan that cannot be published (its year has one already) or closed (no such plan)."""

    event_type = "SubsidyPlanRequestRefused"

    plan_id: Name
    request: Literal["publish", "close"] = Field(description="publish or close")
    reason: PlanRefusedReason = Field(description="why the request is refused")


class SubsidyPlanCloseRequested(DomainEvent):
    """The county closes a plan once finance approves payment; what follows is the disbursement."""

    event_type = "SubsidyPlanCloseRequested"

    plan_id: Key
    closed_on: date


class LineTotal(FrozenModel):
    line: Name
    persons: Count
    amount_fen: Fen


class SubsidyDisbursed(DomainEvent):
    """The lump sum paid to the insurer when a plan closes, with totals per line."""

    event_type = "SubsidyDisbursed"

    plan_id: Name
    programme_year: Year
    insurer: str
    disbursed_on: date
    persons: Count
    amount_fen: Fen
    lines: list[LineTotal]
