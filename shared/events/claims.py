"""Events of claims: what the insurer reports, and what the claims service pays or rejects."""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import ConfigDict, Field, model_validator

from .base import DomainEvent, Fen, Key, Name, one_variant_per
from .enrollment import IdNumber
from .programme import Ratio as Ratio  # claims name it from here too
from .programme import Year
from .reasons import ClaimDeferredReason, ClaimLimit, ClaimRejectedReason, CoverEndedReason


class ClaimKind(StrEnum):
    death = "death"  # 意外身故
    disability = "disability"  # 意外伤残
    medical = "medical"  # 意外医疗


_MEDICAL_FIGURES = ("expenses_fen", "social_insurance_paid_fen", "deductible_fen", "payment_ratio")
# The fields each kind of claim needs (present, not null) and must not carry (left out or null): what
# ``ClaimReported._fields_for_kind`` enforces, published as one schema per kind (``one_variant_per``).
FIELDS_OF_KIND: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "death": (("outcome_date",), ("disability_grade", *_MEDICAL_FIGURES)),
    "disability": (("outcome_date", "disability_grade"), _MEDICAL_FIGURES),
    "medical": (("expenses_fen", "social_insurance_paid_fen"), ("disability_grade",)),
}


class ClaimReported(DomainEvent):
    """A claim as the insurer reports it. Medical claims carry the figures the payment needs."""

    model_config = ConfigDict(json_schema_extra=one_variant_per("kind", FIELDS_OF_KIND))
    event_type = "ClaimReported"

    claim_id: Key
    policy_number: Name
    resident_id: IdNumber
    accident_date: date
    reported_on: date
    kind: ClaimKind
    outcome_date: date | None = Field(
        default=None, description="death: date of death; disability: date the grade was assessed (must be within 180 days)"
    )
    disability_grade: int | None = Field(default=None, ge=1, le=10, description="JR/T 0083-2013 grade, 1 = 100%")
    expenses_fen: Fen | None = Field(default=None, description="eligible inpatient expenses")
    social_insurance_paid_fen: Fen | None = None
    deductible_fen: Fen | None = Field(default=None, description=(
        "medical: optional; the policy's deductible applies (PolicyIssued.deductible_fen). Sent and different: "
        "rejected terms_mismatch. Required only for policies that carry no deductible"))
    payment_ratio: Ratio | None = Field(default=None, description=(
        "medical: optional, as deductible_fen (PolicyIssued.payment_ratio)"))

    @model_validator(mode="after")
    def _fields_for_kind(self) -> ClaimReported:
        medical = (self.expenses_fen, self.social_insurance_paid_fen)
        terms = (self.deductible_fen, self.payment_ratio)
        if self.kind is not ClaimKind.medical and self.outcome_date is None:
            raise ValueError("a death or disability claim needs outcome_date (date of death or of the assessment)")
        if self.kind is ClaimKind.disability and self.disability_grade is None:
            raise ValueError("a disability claim needs disability_grade")
        if self.kind is not ClaimKind.disability and self.disability_grade is not None:
            raise ValueError("disability_grade belongs to disability claims only")
        if self.kind is ClaimKind.medical and any(v is None for v in medical):
            raise ValueError("a medical claim needs expenses_fen and social_insurance_paid_fen")
        if self.kind is not ClaimKind.medical and any(v is not None for v in (*medical, *terms)):
            raise ValueError("expense figures belong to medical claims only")
        return self


class ClaimDeferred(DomainEvent):
    """A claim on a policy number the claims service does not know yet (the policy may still be on
    its way: a claim published in the same burst as its household). It is decided when the policy
    arrives, or rejected ``unknown_policy`` after 30 days of log time without it."""

    event_type = "ClaimDeferred"

    claim_id: Name
    policy_number: Name
    resident_id: IdNumber
    kind: ClaimKind
    accident_date: date
    reported_on: date
    reason: ClaimDeferredReason = Field(default="policy_not_yet_known", description="why the claim waits")


class ClaimPaid(DomainEvent):
    event_type = "ClaimPaid"

    claim_id: Name
    policy_number: Name
    programme_year: Year
    township: Name
    resident_id: IdNumber
    kind: ClaimKind
    accident_date: date
    paid_on: date
    amount_fen: Fen
    computed_fen: Fen = Field(description="what the rule gives before any remaining limit")
    limited_by: ClaimLimit | None = Field(default=None, description="the limit that capped the payment, if any")
    deferred_on: date | None = Field(default=None, description="the day (CST) the claim was deferred awaiting its policy, if it was")


class ClaimRejected(DomainEvent):
    event_type = "ClaimRejected"

    claim_id: Name
    policy_number: Name
    programme_year: Year | None = Field(default=None, description="of the policy; none when the policy is unknown")
    township: Name | None = Field(default=None, description="of the policy; none when the policy is unknown")
    resident_id: IdNumber
    kind: ClaimKind
    reason: ClaimRejectedReason = Field(description="why the claim is refused (shared/events/reasons.py)")
    deferred_on: date | None = Field(default=None, description="the day (CST) the claim was deferred awaiting its policy, if it was")


class CoverEnded(DomainEvent):
    """A person's accident cover ends after death or after disability payments reach the share."""

    event_type = "CoverEnded"

    policy_number: Name
    resident_id: IdNumber
    reason: CoverEndedReason = Field(description="why the cover ends")
    claim_id: Name
    ended_on: date | None = Field(default=None, description=(
        "death: the date of death; a medical claim for an accident on or before it is still judged as covered"))
