"""Product terms per programme year (ProductTermsPublished), as given/when/then on enrollment's
rules (services/enrollment/decider.py): the policy carries the terms in force when it is issued.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from services.enrollment.decider import DEFAULT_TERMS, EnrollmentState, decide, evolve
from shared.events import registry
from shared.events.claims import ClaimKind, ClaimReported
from shared.events.enrollment import PolicyIssued
from shared.events.programme import ProductTermsPublished
from shared.events.subjects import PRODUCER_EVENTS, inbound_subject
from tests.unit.builders import ACCIDENT, family, member, policy, registration


def terms(year: int = 2024, **overrides: Any) -> ProductTermsPublished:
    """A 200-yuan version: twice the 100-yuan cover, 100 yuan deductible, 90%."""
    fields: dict[str, Any] = dict(
        programme_year=year, product="200元版", premium_per_unit_fen=200_00, death_disability_per_unit_fen=400_000_00,
        medical_limit_per_unit_fen=28_000_00, deductible_fen=100_00, payment_ratio=Decimal("0.9"))
    return ProductTermsPublished(**(fields | overrides))


def given(*events: ProductTermsPublished) -> EnrollmentState:
    state = EnrollmentState()
    for event in events:
        evolve(state, event)
    return state


def issued(outcome: object) -> PolicyIssued:
    assert isinstance(outcome, PolicyIssued), outcome
    return outcome


def test_a_year_without_published_terms_issues_the_mingxi_100_yuan_version_with_no_medical_terms():
    policy_ = issued(decide(registration(), given()))

    assert (policy_.premium_fen, policy_.medical_limit_fen) == (100_00, 14_000_00)
    assert sum(p.death_disability_sum_fen for p in policy_.insured) == 200_000_00
    assert (policy_.deductible_fen, policy_.payment_ratio) == (None, None)
    assert (DEFAULT_TERMS.deductible_fen, DEFAULT_TERMS.payment_ratio) == (None, None)


def test_a_policy_carries_the_terms_published_for_its_year():
    policy_ = issued(decide(registration(), given(terms())))

    assert (policy_.premium_fen, policy_.medical_limit_fen) == (200_00, 28_000_00)
    assert [p.death_disability_sum_fen for p in policy_.insured] == [13333334, 13333333, 13333333]
    assert (policy_.deductible_fen, policy_.payment_ratio) == (100_00, Decimal("0.9"))


def test_the_amounts_of_the_terms_are_per_unit_but_the_deductible_and_ratio_are_not():
    policy_ = issued(decide(registration(units=3), given(terms())))

    assert (policy_.premium_fen, policy_.medical_limit_fen) == (600_00, 84_000_00)
    assert sum(p.death_disability_sum_fen for p in policy_.insured) == 1_200_000_00
    assert (policy_.deductible_fen, policy_.payment_ratio) == (100_00, Decimal("0.9"))


def test_the_terms_of_another_year_do_not_apply():
    policy_ = issued(decide(registration(year=2024), given(terms(year=2025))))

    assert (policy_.premium_fen, policy_.deductible_fen) == (100_00, None)


def test_terms_published_again_apply_to_the_policies_issued_after_them_only():
    state = given(terms())
    first = issued(decide(registration(household_id="H1"), state))
    evolve(state, first)

    evolve(state, terms(deductible_fen=0, payment_ratio=Decimal("1")))
    later = issued(decide(registration(member(sequence=55), household_id="H2"), state))

    assert (first.deductible_fen, later.deductible_fen) == (100_00, 0)


def test_a_policy_issued_before_terms_existed_still_parses_without_them():
    old = policy().model_dump(mode="json")
    del old["deductible_fen"], old["payment_ratio"]

    parsed = PolicyIssued.model_validate(old)

    assert (parsed.deductible_fen, parsed.payment_ratio) == (None, None)


def test_the_payment_ratio_is_a_decimal_from_0_to_1_sent_as_a_string():
    assert terms(payment_ratio="0.85").payment_ratio == Decimal("0.85")
    with pytest.raises(ValidationError):
        terms(payment_ratio="1.2")


def test_terms_with_no_premium_are_refused():
    with pytest.raises(ValidationError):
        terms(premium_per_unit_fen=0)


def test_a_medical_claim_may_leave_the_deductible_and_ratio_to_the_policy():
    claim = ClaimReported(claim_id="C1", policy_number="P2024-chengguan-H1", resident_id=family()[0].resident_id,
                          accident_date=ACCIDENT, reported_on=ACCIDENT, kind=ClaimKind.medical, expenses_fen=1_000_00,
                          social_insurance_paid_fen=0)

    assert (claim.deductible_fen, claim.payment_ratio) == (None, None)


def test_the_county_publishes_the_terms_and_the_insurer_may_not():
    assert "ProductTermsPublished" in PRODUCER_EVENTS["county"]
    assert inbound_subject("county", "ProductTermsPublished") == "guanhuai.in.county.ProductTermsPublished"
    with pytest.raises(ValueError):
        inbound_subject("insurer", "ProductTermsPublished")
    assert registry.payload_class("ProductTermsPublished") is ProductTermsPublished
