"""Events about households and policies: what county systems send, and what enrollment records."""

from __future__ import annotations

import uuid
from datetime import date
from enum import StrEnum
from typing import Annotated

from pydantic import AwareDatetime, Field, model_validator

from .base import DomainEvent, Fen, FrozenModel, Key, Name
from .programme import Ratio, Year
from .reasons import CancellationReason, CorrectionRefusedReason, HouseholdReason, MemberReason

# Shape only; the check character and birth date are business rules that enrollment applies,
# so that one bad member is left out with a reason instead of failing the whole household.
IdNumber = Annotated[str, Field(pattern=r"^[0-9]{17}[0-9Xx]$", description="18-character resident ID number")]
Units = Annotated[int, Field(ge=1, le=100, description="units (份) bought; 100 yuan each in the 100-yuan version")]


class Payer(StrEnum):
    government = "government"  # 政府投保: the township pays for priority groups
    agency = "agency"  # 单位投保: an agency or unit pays for its staff
    self_paid = "self"  # 自主投保: the family pays


class HouseholdCategory(StrEnum):
    two_daughters_sterilised = "two_daughters_sterilised"  # 二女结扎户
    single_daughter_certified = "single_daughter_certified"  # 独女领证户
    special_family = "special_family"  # 计生特殊家庭
    lost_only_child = "lost_only_child"  # 失独家庭
    only_child_disabled = "only_child_disabled"  # 独生子女伤残家庭
    poor = "poor"  # 困难计生家庭
    poverty_relief = "poverty_relief"  # 精准扶贫计生户
    agency_staff = "agency_staff"  # 机关企事业单位在岗职工
    general = "general"  # 其他计生家庭


class Relation(StrEnum):
    head = "head"  # 户主
    spouse = "spouse"  # 配偶
    child = "child"  # 子女


class Member(FrozenModel):
    name: str = Field(min_length=1, max_length=60)
    resident_id: IdNumber
    relation: Relation
    birth_date: date


class HouseholdRegistered(DomainEvent):
    """A household agreed to cover and paid (or its payer did): the county's enrolment record.

    Version 2 added ``units`` and ``village`` and renamed ``consent_date`` to ``paid_on``.
    """

    event_type = "HouseholdRegistered"
    schema_version = 2

    household_id: Key
    programme_year: Year
    township: Key = Field(description="the township (or the agencies' pseudo-township): its area code, registered name or alias")
    village: Name | None = Field(default=None, description="the village: its area code, registered name or alias (free text while its township has no village registered)")
    category: HouseholdCategory
    payer: Payer
    payer_name: str | None = Field(default=None, max_length=100, description="the paying agency or township")
    units: Units = 1
    members: list[Member] = Field(min_length=1, max_length=30)
    paid_on: date = Field(description="the day the family agreed and the premium was paid")
    renewal: bool = False


class HouseholdCorrected(HouseholdRegistered):
    """A county's corrected registration: the household's registration for the year as it should
    have been (every field, not only those that changed), naming the one it replaces. Enrollment
    amends the policy in force (``PolicyAmended``) or refuses (``CorrectionRefused``)."""

    event_type = "HouseholdCorrected"
    schema_version = 1

    corrects: uuid.UUID = Field(description=(
        "event id, as the county sent it, of the HouseholdRegistered or HouseholdCorrected this replaces: the "
        "one the household's policy in force came from"))


class PolicyCancellationRequested(DomainEvent):
    """A county asks to cancel a household's policy for the year before its cover starts."""

    event_type = "PolicyCancellationRequested"

    household_id: Key
    programme_year: Year
    reason: CancellationReason


class InsuredPerson(FrozenModel):
    resident_id: IdNumber
    name: str
    relation: Relation
    birth_date: date
    death_disability_sum_fen: Fen = Field(description="this person's equal share of the death/disability cover")


class ExcludedMember(FrozenModel):
    resident_id: str = Field(max_length=40)
    reason: MemberReason = Field(description="why this member is left out (shared/events/reasons.py)")


class PolicyIssued(DomainEvent):
    """A one-year policy for a household: who is insured, for how much, and from when to when."""

    event_type = "PolicyIssued"

    policy_number: Name = Field(description=(
        "P{year}-{township}-{household}, with '%' in the township written %25 and '-' written %2D (issued "
        "before that rule: the township as it was); too long for that: P{year}-{digest}. Read it, never rebuild it"))
    household_id: Name
    programme_year: Year
    township: Name
    village: Name | None = None
    category: HouseholdCategory
    payer: Payer
    units: Units
    premium_fen: Fen
    issued_on: date
    cover_start: AwareDatetime = Field(description="00:00 CST the day after issue (inclusive)")
    cover_end: AwareDatetime = Field(description="24:00 CST on the end date (exclusive)")
    insured: list[InsuredPerson] = Field(min_length=1)
    excluded: list[ExcludedMember] = []
    medical_limit_fen: Fen = Field(description="accident medical limit shared by the household for the policy year")
    renewal: bool = False
    # The medical terms in force when issued (the year's ProductTermsPublished). Absent on policies
    # of a year without published terms, and on policies issued before terms existed: the insurer
    # then states both on each medical claim.
    deductible_fen: Fen | None = Field(default=None, description="accident medical deductible per claim, from the year's product terms")
    payment_ratio: Ratio | None = Field(default=None, description="accident medical payment ratio, from the year's product terms")

    @model_validator(mode="after")
    def _cover_is_ordered(self) -> PolicyIssued:
        if self.cover_end <= self.cover_start:
            raise ValueError("cover_end must be after cover_start")
        return self


class HouseholdRejected(DomainEvent):
    """A registration that yields no policy, with every reason."""

    event_type = "HouseholdRejected"

    household_id: Name
    programme_year: Year
    township: Name = Field(description="the township's area code; as sent when it names no registered township (unknown_area)")
    payer: Payer
    reasons: list[HouseholdReason] = Field(min_length=1, description="why no policy (shared/events/reasons.py)")
    excluded: list[ExcludedMember] = []
    detail: str | None = Field(default=None, max_length=500, description="what the reason is about, e.g. the area name sent (unknown_area)")


class PolicyFigures(FrozenModel):
    """What a policy counted in reports before it was amended or cancelled: reports move or remove
    it with this event alone."""

    township: Name
    payer: Payer
    insured_persons: int = Field(ge=1)
    premium_fen: Fen
    medical_limit_fen: Fen = Field(description="claims: what was used of it carries over to the amended limit")
    issued_at: AwareDatetime = Field(description="occurred_at of its PolicyIssued (the month reports count it in)")


class IdCorrection(FrozenModel):
    was: IdNumber
    now: IdNumber


class PolicyAmended(PolicyIssued):
    """A policy re-issued after a county's correction: the same number, the policy as it now stands
    (every field), and what it counted before. After cover has started only names, ID numbers and
    the area change; ``renamed`` pairs each corrected ID number with the one it replaces (claims
    carry over what was paid to that person)."""

    event_type = "PolicyAmended"
    schema_version = 1

    previous: PolicyFigures
    renamed: list[IdCorrection] = []


class PolicyCancelled(DomainEvent):
    """A policy cancelled before its cover started, at the county's request: nobody is insured on it."""

    event_type = "PolicyCancelled"

    policy_number: Name
    household_id: Name
    programme_year: Year
    reason: CancellationReason
    previous: PolicyFigures


class CorrectionRefused(DomainEvent):
    """A county's correction or cancellation that changes nothing, with every reason."""

    event_type = "CorrectionRefused"

    household_id: Name
    programme_year: Year
    reasons: list[CorrectionRefusedReason | HouseholdReason] = Field(
        min_length=1, description="why nothing changed (shared/events/reasons.py)")
    excluded: list[ExcludedMember] = []
