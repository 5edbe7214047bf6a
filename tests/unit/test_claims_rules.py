"""Claim rules (services/claims/decider.py), as given/when/then.

Given a policy (three members: 66,666.67 + 66,666.67 + 66,666.66 yuan; 14,000-yuan household
medical limit; issued 1 March 2024, cover 2 March 2024 to 1 March 2025 CST) and the claims
already reported and settled, when a claim is reported, then what is paid or rejected and why.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from pydantic import ValidationError

from services.claims.decider import (
    ClaimsState,
    Deferred,
    PersonCover,
    cover_from_policy,
    decide,
    decide_expired,
    decide_waiting,
    defer,
    disability_ratio,
    evolve,
)
from services.enrollment.decider import EnrollmentState
from services.enrollment.decider import decide as enrol
from shared.events.claims import ClaimDeferred, ClaimKind, ClaimPaid, ClaimRejected, ClaimReported, CoverEnded
from tests.unit.builders import (
    ACCIDENT,
    FIRST_DAY,
    ISSUED_ON,
    LAST_DAY,
    child,
    death,
    disability,
    medical,
    member,
    policy,
    registration,
    resident_id_ending_in_x,
    settled,
    spouse,
)

PAID_ON = date(2024, 7, 1)
HEAD, SPOUSE, CHILD = member().resident_id, spouse().resident_id, child().resident_id
POLICY = policy(HEAD, SPOUSE, CHILD)  # P2024-chengguan-H1; shares 6666667, 6666667, 6666666
LIMIT = 14_000_00


def given(*events) -> ClaimsState:  # type: ignore[no-untyped-def]
    state = ClaimsState()
    for event in events:
        evolve(state, event)
    return state


def when(claim, state: ClaimsState):  # type: ignore[no-untyped-def]
    return decide(claim, state, paid_on=PAID_ON)


def payment(events) -> ClaimPaid:  # type: ignore[no-untyped-def]
    assert events and isinstance(events[0], ClaimPaid), f"expected a payment, got {events!r}"
    return events[0]


def rejection(events) -> str:  # type: ignore[no-untyped-def]
    assert len(events) == 1 and isinstance(events[0], ClaimRejected), f"expected one rejection, got {events!r}"
    return events[0].reason


def amounts(events) -> tuple[int, int, str | None]:  # type: ignore[no-untyped-def]
    paid = payment(events)
    return paid.amount_fen, paid.computed_fen, paid.limited_by


# --- death --------------------------------------------------------------------------------------


def test_death_pays_the_persons_whole_share():
    claim = death(HEAD)

    events = when(claim, given(POLICY))

    assert payment(events) == ClaimPaid(
        claim_id="C1", policy_number=POLICY.policy_number, programme_year=2024, township="chengguan", resident_id=HEAD,
        kind=ClaimKind.death, accident_date=ACCIDENT, paid_on=PAID_ON, amount_fen=6666667, computed_fen=6666667,
        limited_by=None)


def test_death_ends_that_persons_cover():
    events = when(death(CHILD, claim_id="C7"), given(POLICY))

    assert events[1:] == [CoverEnded(policy_number=POLICY.policy_number, resident_id=CHILD, reason="death",
                                     claim_id="C7", ended_on=ACCIDENT + timedelta(days=1))]


def test_death_pays_the_share_minus_disability_already_paid():
    earlier = disability(HEAD, 10, claim_id="C1")
    history = given(POLICY, *settled(earlier, 666667))

    events = when(death(HEAD, claim_id="C2", accident=date(2024, 9, 1)), history)

    assert amounts(events) == (6666667 - 666667, 6000000, None)
    assert isinstance(events[1], CoverEnded)


@pytest.mark.parametrize("later", [
    death(HEAD, claim_id="C2"),
    disability(HEAD, 5, claim_id="C2"),
    medical(HEAD, 10_000_00, claim_id="C2", accident=ACCIDENT + timedelta(days=2)),
], ids=["death", "disability", "medical after the death"])
def test_rejects_a_later_claim_for_a_person_whose_cover_ended_by_death(later):
    history = given(POLICY, *settled(death(HEAD, claim_id="C1"), 6666667, ends_cover="death"))  # died the day after

    assert rejection(when(later, history)) == "cover_ended"


def test_a_medical_claim_for_an_accident_before_the_death_is_paid_within_the_remaining_household_limit():
    history = given(POLICY, *settled(medical(SPOUSE, 10_000_00, claim_id="C1"), 10_000_00),
                    *settled(death(HEAD, claim_id="C2", accident=ACCIDENT + timedelta(days=5)), 6666667, ends_cover="death"))

    events = when(medical(HEAD, 6_000_00, claim_id="C3", accident=ACCIDENT, reported=ACCIDENT + timedelta(days=30)), history)

    assert amounts(events) == (4_000_00, 6_000_00, "household_medical_limit")


def test_a_medical_claim_for_the_accident_that_caused_the_death_on_its_day_is_paid():
    history = given(POLICY, *settled(death(HEAD, claim_id="C1", died=ACCIDENT), 6666667, ends_cover="death"))

    events = when(medical(HEAD, 2_000_00, claim_id="C2", accident=ACCIDENT), history)

    assert amounts(events) == (2_000_00, 2_000_00, None)


def test_a_medical_claim_for_an_accident_after_the_death_is_rejected_cover_ended():
    history = given(POLICY, *settled(death(HEAD, claim_id="C1", died=ACCIDENT), 6666667, ends_cover="death"))

    events = when(medical(HEAD, 2_000_00, claim_id="C2", accident=ACCIDENT + timedelta(days=1)), history)

    assert rejection(events) == "cover_ended"


def test_a_medical_claim_after_disability_used_up_the_share_is_still_rejected_cover_ended():
    history = given(POLICY, *settled(disability(HEAD, 1, claim_id="C1"), 6666667, ends_cover="disability_sum_exhausted"))

    assert rejection(when(medical(HEAD, 1_000_00, claim_id="C2", accident=ACCIDENT - timedelta(days=5)), history)) == "cover_ended"


def test_the_death_of_one_member_leaves_the_others_covered():
    history = given(POLICY, *settled(death(HEAD, claim_id="C1"), 6666667, ends_cover="death"))

    events = when(death(SPOUSE, claim_id="C2"), history)

    assert amounts(events) == (6666667, 6666667, None)


# --- disability ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("grade", "ratio"), [
    (1, "1"), (2, "0.9"), (3, "0.8"), (4, "0.7"), (5, "0.6"),
    (6, "0.5"), (7, "0.4"), (8, "0.3"), (9, "0.2"), (10, "0.1"),
])
def test_disability_grades_pay_the_ratios_of_jr_t_0083_2013(grade, ratio):
    assert disability_ratio(grade) == Decimal(ratio)


@pytest.mark.parametrize("grade", [0, 11, -1])
def test_there_is_no_disability_grade_outside_1_to_10(grade):
    with pytest.raises(ValueError):
        disability_ratio(grade)


def test_grade_1_disability_pays_the_whole_share():
    events = when(disability(HEAD, 1), given(POLICY))

    assert amounts(events) == (6666667, 6666667, None)


def test_grade_10_disability_pays_a_tenth_of_the_share_rounded_half_up():
    events = when(disability(HEAD, 10), given(POLICY))

    assert amounts(events) == (666667, 666667, None)  # 666,666.7 fen


def test_grade_3_disability_pays_80_percent_of_the_share_rounded_half_up_to_the_fen():
    events = when(disability(HEAD, 3), given(POLICY))

    assert amounts(events) == (5333334, 5333334, None)  # 6,666,667 x 0.8 = 5,333,333.6 fen


def test_disability_rounds_an_exact_half_fen_up_not_to_even():
    odd_share = policy(HEAD, shares=[1818181])  # 1,818,181 x 0.5 = 909,090.5 fen

    events = when(disability(HEAD, 6), given(odd_share))

    assert amounts(events) == (909091, 909091, None)


def test_disability_below_the_share_leaves_cover_in_force():
    events = when(disability(HEAD, 3), given(POLICY))

    assert [type(e) for e in events] == [ClaimPaid]


def test_grade_1_disability_ends_the_persons_cover():
    events = when(disability(SPOUSE, 1, claim_id="C4"), given(POLICY))

    assert events[1:] == [CoverEnded(policy_number=POLICY.policy_number, resident_id=SPOUSE,
                                     reason="disability_sum_exhausted", claim_id="C4")]


def test_disability_payments_to_one_person_are_capped_at_the_share():
    history = given(POLICY, *settled(disability(HEAD, 3, claim_id="C1"), 5333334))

    events = when(disability(HEAD, 3, claim_id="C2", accident=date(2024, 10, 1)), history)

    assert amounts(events) == (6666667 - 5333334, 5333334, "person_sum")


def test_disability_payments_reaching_the_share_end_the_persons_cover():
    history = given(POLICY, *settled(disability(HEAD, 3, claim_id="C1"), 5333334))

    events = when(disability(HEAD, 3, claim_id="C2", accident=date(2024, 10, 1)), history)

    assert events[1:] == [CoverEnded(policy_number=POLICY.policy_number, resident_id=HEAD,
                                     reason="disability_sum_exhausted", claim_id="C2")]


def test_disability_exactly_reaching_the_share_ends_cover_without_naming_a_limit():
    # 60% = 4,000,000.2 -> 4,000,000 fen; then 40% = 2,666,666.8 -> 2,666,667 fen: 6,666,667 in all
    history = given(POLICY, *settled(disability(HEAD, 5, claim_id="C1"), 4000000))

    events = when(disability(HEAD, 7, claim_id="C2", accident=date(2024, 10, 1)), history)

    assert amounts(events) == (2666667, 2666667, None)
    assert [type(e) for e in events] == [ClaimPaid, CoverEnded]


def test_rejects_claims_after_disability_payments_used_up_the_share():
    used_up = settled(disability(HEAD, 1, claim_id="C1"), 6666667, ends_cover="disability_sum_exhausted")
    history = given(POLICY, *used_up)

    assert rejection(when(death(HEAD, claim_id="C2", accident=date(2024, 11, 1)), history)) == "cover_ended"


def test_disability_shares_grow_with_units():
    two_units = policy(HEAD, SPOUSE, CHILD, units=2)  # shares 13,333,334 / 13,333,333 / 13,333,333

    events = when(disability(SPOUSE, 3), given(two_units))

    assert amounts(events) == (10666666, 10666666, None)  # 13,333,333 x 0.8 = 10,666,666.4


# --- accident medical ---------------------------------------------------------------------------


def test_medical_pays_expenses_minus_social_insurance_minus_deductible_times_the_ratio():
    claim = medical(HEAD, 10_000_00, social_insurance_fen=3_000_00, deductible_fen=100_00, ratio="0.8")

    events = when(claim, given(POLICY))

    assert amounts(events) == (5_520_00, 5_520_00, None)  # (10,000 - 3,000 - 100) x 0.8 yuan
    assert [type(e) for e in events] == [ClaimPaid]


def test_medical_payment_is_rounded_half_up_to_the_fen():
    claim = medical(HEAD, 1_234_50, ratio="0.85")  # 123,450 x 0.85 = 104,932.5 fen

    events = when(claim, given(POLICY))

    assert amounts(events) == (104933, 104933, None)


def test_medical_payment_rounds_a_four_decimal_ratio_once():
    claim = medical(HEAD, 1_001_02, social_insurance_fen=1_00, deductible_fen=2, ratio="0.3333")  # 100,000 x 0.3333

    events = when(claim, given(POLICY))

    assert amounts(events) == (33330, 33330, None)


def test_medical_pays_nothing_when_social_insurance_and_deductible_exceed_the_expenses():
    claim = medical(HEAD, 500_00, social_insurance_fen=450_00, deductible_fen=100_00, ratio="0.9")

    events = when(claim, given(POLICY))

    assert amounts(events) == (0, 0, None)


def test_medical_within_the_remaining_limit_is_paid_in_full():
    history = given(POLICY, *settled(medical(HEAD, 10_000_00, claim_id="C1"), 10_000_00))

    events = when(medical(SPOUSE, 4_000_00, claim_id="C2"), history)

    assert amounts(events) == (4_000_00, 4_000_00, None)


def test_the_medical_limit_is_shared_by_the_household_across_members():
    history = given(POLICY, *settled(medical(HEAD, 10_000_00, claim_id="C1"), 10_000_00))

    events = when(medical(SPOUSE, 8_000_00, claim_id="C2"), history)

    assert amounts(events) == (4_000_00, 8_000_00, "household_medical_limit")


def test_rejects_a_medical_claim_once_the_household_limit_is_used_up():
    history = given(POLICY, *settled(medical(HEAD, 10_000_00, claim_id="C1"), 10_000_00),
                    *settled(medical(SPOUSE, 8_000_00, claim_id="C2"), 4_000_00))

    assert rejection(when(medical(CHILD, 1_000_00, claim_id="C3"), history)) == "limit_exhausted"


def test_the_medical_limit_runs_across_claims_of_the_same_member():
    state = given(POLICY)
    outcomes = []
    for n, expenses in enumerate([6_000_00, 6_000_00, 6_000_00, 6_000_00], start=1):
        claim = medical(CHILD, expenses, claim_id=f"C{n}", accident=ACCIDENT + timedelta(days=n))
        decided = when(claim, state)
        outcomes.append(decided[0].amount_fen if isinstance(decided[0], ClaimPaid) else decided[0].reason)
        for event in (claim, *decided):
            evolve(state, event)

    assert outcomes == [6_000_00, 6_000_00, 2_000_00, "limit_exhausted"]


def test_a_zero_medical_claim_is_not_refused_when_the_limit_is_used_up():
    history = given(POLICY, *settled(medical(HEAD, LIMIT, claim_id="C1"), LIMIT))

    events = when(medical(SPOUSE, 100_00, social_insurance_fen=100_00, claim_id="C2"), history)

    assert amounts(events) == (0, 0, None)


def test_the_medical_limit_grows_with_units():
    two_units = policy(HEAD, SPOUSE, CHILD, units=2)
    history = given(two_units, *settled(medical(HEAD, 20_000_00, claim_id="C1"), 20_000_00))

    events = when(medical(SPOUSE, 10_000_00, claim_id="C2"), history)

    assert amounts(events) == (8_000_00, 10_000_00, "household_medical_limit")


def test_medical_payments_do_not_reduce_anyones_death_and_disability_share():
    history = given(POLICY, *settled(medical(HEAD, LIMIT, claim_id="C1"), LIMIT))

    events = when(death(HEAD, claim_id="C2"), history)

    assert amounts(events) == (6666667, 6666667, None)


# --- the policy's medical terms (deductible and payment ratio) ---------------------------------

WITH_TERMS = POLICY.model_copy(update={"deductible_fen": 100_00, "payment_ratio": Decimal("0.8")})


def unstated(number: str, expenses_fen: int, **kwargs) -> ClaimReported:  # type: ignore[no-untyped-def]
    """A medical claim that leaves the deductible and ratio to the policy."""
    return medical(number, expenses_fen, **kwargs).model_copy(update={"deductible_fen": None, "payment_ratio": None})


def test_a_medical_claim_without_terms_is_paid_with_the_policys_deductible_and_ratio():
    events = when(unstated(HEAD, 10_000_00, social_insurance_fen=3_000_00), given(WITH_TERMS))

    assert amounts(events) == (5_520_00, 5_520_00, None)  # (10,000 - 3,000 - 100) x 0.8 yuan


def test_a_medical_claim_stating_the_policys_own_terms_is_paid_the_same():
    claim = medical(HEAD, 10_000_00, social_insurance_fen=3_000_00, deductible_fen=100_00, ratio="0.80")

    assert amounts(when(claim, given(WITH_TERMS))) == (5_520_00, 5_520_00, None)


@pytest.mark.parametrize(("deductible_fen", "ratio"), [(0, "0.8"), (100_00, "0.9"), (0, "1")],
                         ids=["other deductible", "other ratio", "both other"])
def test_rejects_a_medical_claim_stating_terms_other_than_the_policys(deductible_fen, ratio):
    claim = medical(HEAD, 10_000_00, deductible_fen=deductible_fen, ratio=ratio)

    assert rejection(when(claim, given(WITH_TERMS))) == "terms_mismatch"


def test_a_policy_without_terms_is_paid_with_the_terms_the_claim_states():
    claim = medical(HEAD, 10_000_00, social_insurance_fen=3_000_00, deductible_fen=100_00, ratio="0.8")

    assert amounts(when(claim, given(POLICY))) == (5_520_00, 5_520_00, None)


def test_rejects_a_medical_claim_without_terms_on_a_policy_that_carries_none():
    assert rejection(when(unstated(HEAD, 10_000_00), given(POLICY))) == "terms_not_stated"


def test_the_cover_keeps_the_policys_terms():
    cover = cover_from_policy(WITH_TERMS)

    assert (cover.deductible_fen, cover.payment_ratio) == (100_00, Decimal("0.8"))


# --- the policy term ----------------------------------------------------------------------------


def test_pays_an_accident_on_the_first_day_of_cover():
    events = when(death(HEAD, accident=FIRST_DAY), given(POLICY))

    assert payment(events).accident_date == date(2024, 3, 2)


def test_rejects_an_accident_on_the_day_the_policy_was_issued():
    assert rejection(when(death(HEAD, accident=ISSUED_ON), given(POLICY))) == "outside_cover"


def test_pays_an_accident_on_the_last_day_of_cover():
    events = when(medical(HEAD, 1_000_00, accident=LAST_DAY), given(POLICY))

    assert payment(events).accident_date == date(2025, 3, 1)


def test_rejects_an_accident_the_day_after_cover_ends():
    assert rejection(when(medical(HEAD, 1_000_00, accident=date(2025, 3, 2)), given(POLICY))) == "outside_cover"


def test_cover_runs_from_the_day_after_issue_to_the_same_date_a_year_on():
    cover = cover_from_policy(POLICY)

    assert (cover.first_day, cover.last_day) == (date(2024, 3, 2), date(2025, 3, 1))
    assert cover.medical_remaining_fen == LIMIT
    assert cover.persons == {HEAD: PersonCover(6666667), SPOUSE: PersonCover(6666667), CHILD: PersonCover(6666666)}


def test_cover_days_are_read_in_china_time_even_from_utc_timestamps():
    utc = timezone.utc
    in_utc = POLICY.model_copy(update={"cover_start": datetime(2024, 3, 1, 16, 0, tzinfo=utc),
                                       "cover_end": datetime(2025, 3, 1, 16, 0, tzinfo=utc)})

    cover = cover_from_policy(in_utc)

    assert (cover.first_day, cover.last_day) == (date(2024, 3, 2), date(2025, 3, 1))


def test_a_policy_issued_on_29_february_covers_28_february_but_not_1_march_next_year():
    leap = policy(HEAD, issued_on=date(2024, 2, 29))
    state = given(leap)

    assert isinstance(when(medical(HEAD, 100_00, claim_id="C1", accident=date(2025, 2, 28)), state)[0], ClaimPaid)
    assert rejection(when(medical(HEAD, 100_00, claim_id="C2", accident=date(2025, 3, 1)), state)) == "outside_cover"


# --- who and what may claim ---------------------------------------------------------------------


def test_rejects_a_claim_for_a_person_not_insured_on_the_policy():
    stranger = member(date(1990, 1, 1), 55).resident_id

    assert rejection(when(death(stranger), given(POLICY))) == "not_insured_on_policy"


def test_a_person_insured_on_another_policy_is_not_insured_on_this_one():
    neighbour = member(date(1990, 1, 1), 55).resident_id
    history = given(POLICY, policy(neighbour, household_id="H2"))

    assert rejection(when(death(neighbour), history)) == "not_insured_on_policy"


def test_a_member_left_out_at_enrolment_is_not_insured_on_the_policy():
    too_old = member(date(1958, 3, 2), 13)  # 66 on the first day of cover
    issued = enrol(registration(member(), too_old), EnrollmentState())
    assert [e.resident_id for e in issued.excluded] == [too_old.resident_id]

    assert rejection(when(death(too_old.resident_id), given(issued))) == "not_insured_on_policy"


def test_rejects_a_claim_id_already_reported():
    history = given(POLICY, *settled(medical(HEAD, 1_000_00, claim_id="C1"), 1_000_00))

    assert rejection(when(medical(SPOUSE, 1_000_00, claim_id="C1"), history)) == "duplicate_claim"


def test_a_claim_id_already_rejected_is_still_a_duplicate():
    first = death(HEAD, claim_id="C1", accident=ISSUED_ON)
    history = given(POLICY, first, *when(first, given(POLICY)))

    assert rejection(when(death(HEAD, claim_id="C1"), history)) == "duplicate_claim"


def test_pays_death_exactly_180_days_after_the_accident():
    events = when(death(HEAD, died=ACCIDENT + timedelta(days=180)), given(POLICY))

    assert amounts(events) == (6666667, 6666667, None)


def test_rejects_death_more_than_180_days_after_the_accident():
    claim = death(HEAD, died=ACCIDENT + timedelta(days=181))

    assert rejection(when(claim, given(POLICY))) == "outcome_not_within_180_days"


def test_rejects_disability_assessed_more_than_180_days_after_the_accident():
    claim = disability(HEAD, 3, assessed=ACCIDENT + timedelta(days=181))

    assert rejection(when(claim, given(POLICY))) == "outcome_not_within_180_days"


@pytest.mark.parametrize("kind", [ClaimKind.death, ClaimKind.disability])
def test_a_death_or_disability_claim_without_an_outcome_date_is_not_paid_unchecked(kind):
    try:
        undated = ClaimReported(claim_id="C1", policy_number=POLICY.policy_number, resident_id=HEAD,
                                accident_date=ACCIDENT, reported_on=ACCIDENT + timedelta(days=300), kind=kind,
                                disability_grade=1 if kind is ClaimKind.disability else None)
    except ValidationError:
        return  # equally good: the contract requires the date, so the rule cannot be skipped

    events = when(undated, given(POLICY))

    assert not any(isinstance(e, ClaimPaid) for e in events)


def test_rejects_an_outcome_dated_before_the_accident():
    claim = death(HEAD, died=ACCIDENT - timedelta(days=1))

    assert rejection(when(claim, given(POLICY))) == "outcome_not_within_180_days"


def test_rejects_a_claim_reported_before_the_accident():
    claim = medical(HEAD, 1_000_00, reported=ACCIDENT - timedelta(days=1))

    assert rejection(when(claim, given(POLICY))) == "reported_before_accident"


def test_a_claim_reported_on_the_day_of_the_accident_is_paid():
    events = when(medical(HEAD, 1_000_00, reported=ACCIDENT), given(POLICY))

    assert amounts(events) == (1_000_00, 1_000_00, None)


def test_a_claim_with_a_lower_case_x_matches_the_insured_person():
    number = resident_id_ending_in_x()
    history = given(policy(number))

    events = when(death(number.lower()), history)

    assert payment(events).resident_id == number
    assert events[1].resident_id == number


def test_a_rejection_names_the_claim_the_policy_its_year_and_township_the_person_and_the_kind():
    events = when(death(HEAD, claim_id="C9", accident=ISSUED_ON), given(POLICY))

    assert events == [ClaimRejected(claim_id="C9", policy_number=POLICY.policy_number, resident_id=HEAD,
                                    programme_year=POLICY.programme_year, township=POLICY.township,
                                    kind=ClaimKind.death, reason="outside_cover")]


# --- claims before their policy -------------------------------------------------------------------

REPORTED_AT = datetime(2024, 6, 12, 9, 0, tzinfo=timezone(timedelta(hours=8)))  # when the claim happened and was recorded
ARRIVED_AT = REPORTED_AT + timedelta(hours=1)  # the policy, a little later


def waiting(*claims: ClaimReported, recorded_at: datetime = REPORTED_AT) -> ClaimsState:
    """Given claims reported on a policy the claims service does not know yet, and deferred."""
    state = ClaimsState()
    for claim in claims:
        events = decide(claim, state, paid_on=PAID_ON)
        assert [type(e) for e in events] == [ClaimDeferred], events
        evolve(state, claim)
        defer(state, Deferred(claim, occurred_at=recorded_at, recorded_at=recorded_at))
    return state


def test_a_claim_on_a_policy_not_known_yet_is_deferred_not_rejected():
    events = when(death(HEAD, claim_id="C10", policy_number="P2024-chengguan-H404"), given(POLICY))

    assert events == [ClaimDeferred(claim_id="C10", policy_number="P2024-chengguan-H404", resident_id=HEAD,
                                    kind=ClaimKind.death, accident_date=ACCIDENT, reported_on=ACCIDENT + timedelta(days=2),
                                    reason="policy_not_yet_known")]


def test_a_deferred_claim_is_decided_when_its_policy_arrives():
    state = waiting(death(HEAD, claim_id="C1"))
    evolve(state, POLICY)

    ((claim, events),) = decide_waiting(POLICY.policy_number, state, ARRIVED_AT)

    assert claim.claim.claim_id == "C1"
    assert (payment(events).amount_fen, payment(events).paid_on, payment(events).deferred_on) == (
        6666667, ARRIVED_AT.date(), REPORTED_AT.date())
    assert isinstance(events[1], CoverEnded)


def test_deferred_claims_share_the_household_medical_limit_in_the_order_they_came():
    state = waiting(medical(HEAD, 10_000_00, claim_id="C1"), medical(SPOUSE, 8_000_00, claim_id="C2"))
    evolve(state, POLICY)

    decided = decide_waiting(POLICY.policy_number, state, ARRIVED_AT)

    assert [amounts(events) for _, events in decided] == [
        (10_000_00, 10_000_00, None), (4_000_00, 8_000_00, "household_medical_limit")]


def test_a_deferred_claim_is_judged_by_the_terms_when_its_policy_arrives():
    stranger = member(date(1990, 1, 1), 55).resident_id
    state = waiting(death(stranger, claim_id="C1"))
    evolve(state, POLICY)

    ((_, events),) = decide_waiting(POLICY.policy_number, state, ARRIVED_AT)

    assert rejection(events) == "not_insured_on_policy" and events[0].deferred_on == REPORTED_AT.date()


def test_deciding_the_deferred_claims_does_not_change_the_state():
    state = waiting(medical(HEAD, 10_000_00, claim_id="C1"))
    evolve(state, POLICY)
    limit_before = state.policies[POLICY.policy_number].medical_remaining_fen

    decide_waiting(POLICY.policy_number, state, ARRIVED_AT)

    assert state.policies[POLICY.policy_number].medical_remaining_fen == limit_before
    assert [w.claim.claim_id for w in state.deferred[POLICY.policy_number]] == ["C1"]


def test_a_decided_claim_no_longer_waits():
    state = waiting(medical(HEAD, 1_000_00, claim_id="C1"))
    evolve(state, POLICY)
    ((_, events),) = decide_waiting(POLICY.policy_number, state, ARRIVED_AT)

    for event in events:
        evolve(state, event)

    assert state.deferred == {} and decide_expired(state, REPORTED_AT + timedelta(days=60)) == []


def test_a_claim_deferred_for_30_days_of_log_time_is_rejected_as_unknown_policy():
    state = waiting(death(HEAD, claim_id="C10"))

    ((_, events),) = decide_expired(state, REPORTED_AT + timedelta(days=30))

    assert rejection(events) == "unknown_policy"
    assert (events[0].programme_year, events[0].township, events[0].deferred_on) == (None, None, REPORTED_AT.date())


def test_a_claim_deferred_for_less_than_30_days_of_log_time_still_waits():
    state = waiting(death(HEAD, claim_id="C10"))

    assert decide_expired(state, REPORTED_AT + timedelta(days=30) - timedelta(seconds=1)) == []


def test_a_claim_id_reported_again_while_the_first_waits_is_a_duplicate_and_the_first_still_waits():
    state = waiting(death(HEAD, claim_id="C1"))

    events = when(death(SPOUSE, claim_id="C1"), state)
    for event in events:
        evolve(state, event)

    assert rejection(events) == "duplicate_claim"
    assert [w.claim.resident_id for w in state.deferred["P2024-chengguan-H1"]] == [HEAD]


# --- state ----------------------------------------------------------------------------------------


def test_deciding_does_not_change_the_state():
    state = given(POLICY)

    when(medical(HEAD, 5_000_00), state)
    when(death(SPOUSE, claim_id="C2"), state)

    assert state == given(POLICY)


def test_a_policy_seen_again_does_not_restore_the_used_medical_limit():
    history = given(POLICY, *settled(medical(HEAD, 10_000_00, claim_id="C1"), 10_000_00), POLICY)

    events = when(medical(SPOUSE, 8_000_00, claim_id="C2"), history)

    assert amounts(events) == (4_000_00, 8_000_00, "household_medical_limit")


def test_a_policy_issued_by_enrolment_is_claimable_as_issued():
    issued = enrol(registration(), EnrollmentState())

    assert cover_from_policy(issued) == cover_from_policy(POLICY)
