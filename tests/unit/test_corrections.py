"""Corrections and cancellations (services/enrollment/decider.py), as given/when/then: given a
household's file (its registrations and the policy in force), when the county sends a corrected
registration or a cancellation request, then one PolicyAmended, PolicyCancelled or CorrectionRefused."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from services.enrollment.decider import (
    EnrollmentState,
    HouseholdFile,
    decide,
    decide_cancellation,
    decide_correction,
    evolve,
)
from shared.domain.calendar import CST
from shared.events.enrollment import (
    CorrectionRefused,
    ExcludedMember,
    HouseholdCorrected,
    HouseholdRegistered,
    IdCorrection,
    Payer,
    PolicyAmended,
    PolicyCancellationRequested,
    PolicyCancelled,
    PolicyFigures,
    PolicyIssued,
)
from tests.unit.builders import (
    HEAD_BIRTH,
    YEAR,
    child,
    family,
    member,
    registration,
    resident_id,
    spouse,
    with_wrong_check_character,
)

REGISTERED = uuid.UUID("00000000-0000-0000-0000-000000000001")  # the registration's recorded id
ISSUED_AT = datetime(2024, 3, 1, 9, 0, tzinfo=CST)
BEFORE_COVER = datetime(2024, 3, 1, 18, 0, tzinfo=CST)  # cover starts 2 March 2024 00:00 CST
AFTER_START = datetime(2024, 5, 1, 9, 0, tzinfo=CST)


def on_file(reg: HouseholdRegistered | None = None) -> tuple[HouseholdFile, PolicyIssued]:
    """A household registered (as ``REGISTERED``) and issued its policy."""
    reg = reg or registration()
    issued = decide(reg, EnrollmentState())
    assert isinstance(issued, PolicyIssued)
    file = HouseholdFile()
    file.record(REGISTERED, None, ISSUED_AT, reg)
    file.record(uuid.uuid4(), REGISTERED, ISSUED_AT, issued)
    return file, issued


def holding(policy: PolicyIssued) -> EnrollmentState:
    """Enrollment's state with the policy's persons insured (as its tables hold them)."""
    return evolve(EnrollmentState(), policy)


def corrected(*members, **kwargs) -> HouseholdCorrected:  # type: ignore[no-untyped-def]
    reg = registration(*members, **kwargs)
    return HouseholdCorrected(**reg.model_dump(), corrects=uuid.uuid4())


def amended(outcome: PolicyAmended | CorrectionRefused) -> PolicyAmended:
    assert isinstance(outcome, PolicyAmended), f"expected an amendment, got {outcome!r}"
    return outcome


def refused(outcome: object) -> list[str]:
    assert isinstance(outcome, CorrectionRefused), f"expected a refusal, got {outcome!r}"
    return list(outcome.reasons)


# --- before cover starts: the policy is re-issued under its number ---------------------------------


def test_a_correction_before_cover_starts_reissues_the_policy_under_the_same_number():
    file, issued = on_file()
    head, wife, _ = family()

    policy = amended(decide_correction(corrected(head, wife, units=2, payer=Payer.self_paid), REGISTERED, file,
                                       holding(issued), BEFORE_COVER))

    assert policy.policy_number == issued.policy_number
    assert [p.resident_id for p in policy.insured] == [head.resident_id, wife.resident_id]
    assert (policy.units, policy.premium_fen, policy.payer) == (2, 200_00, Payer.self_paid)
    assert [p.death_disability_sum_fen for p in policy.insured] == [200_000_00, 200_000_00]
    assert policy.previous == PolicyFigures(township="chengguan", payer=Payer.government, insured_persons=3,
                                            premium_fen=100_00, medical_limit_fen=14_000_00, issued_at=ISSUED_AT)


def test_a_correction_before_cover_starts_may_change_the_payment_day_and_so_the_cover_dates():
    file, issued = on_file()

    policy = amended(decide_correction(corrected(paid_on=date(2024, 2, 20)), REGISTERED, file, holding(issued),
                                       BEFORE_COVER))

    assert policy.cover_start == datetime(2024, 2, 21, tzinfo=CST)


def test_the_policys_own_persons_are_not_counted_as_insured_elsewhere():
    file, issued = on_file()

    policy = amended(decide_correction(corrected(), REGISTERED, file, holding(issued), BEFORE_COVER))

    assert policy.excluded == [] and len(policy.insured) == 3


def test_a_corrected_person_insured_on_another_policy_is_left_out():
    file, issued = on_file()
    elsewhere = registration(member(date(1990, 1, 1), 55), household_id="H2")
    state = holding(issued)
    evolve(state, decide(elsewhere, state))
    joining = elsewhere.members[0]

    policy = amended(decide_correction(corrected(*family(), joining), REGISTERED, file, state, BEFORE_COVER))

    assert policy.excluded == [ExcludedMember(resident_id=joining.resident_id, reason="already_insured")]


# --- after cover starts: names, ID numbers and the area only ---------------------------------------


def test_after_cover_starts_an_id_correction_amends_the_insured_list_without_changing_cover_dates():
    file, issued = on_file()
    head, wife, kid = family()
    right_head = member(HEAD_BIRTH, 12)  # the county had typed one digit of the sequence wrong

    policy = amended(decide_correction(corrected(right_head, wife, kid), REGISTERED, file, holding(issued), AFTER_START))

    assert [p.resident_id for p in policy.insured] == [right_head.resident_id, wife.resident_id, kid.resident_id]
    assert (policy.cover_start, policy.cover_end, policy.issued_on) == (issued.cover_start, issued.cover_end,
                                                                        issued.issued_on)
    assert [p.death_disability_sum_fen for p in policy.insured] == [p.death_disability_sum_fen for p in issued.insured]
    assert policy.renamed == [IdCorrection(was=head.resident_id, now=right_head.resident_id)]


def test_after_cover_starts_each_person_keeps_their_share_whatever_order_the_correction_lists_them_in():
    file, issued = on_file()
    head, wife, kid = family()

    policy = amended(decide_correction(corrected(kid, wife, head), REGISTERED, file, holding(issued), AFTER_START))

    shares = {p.resident_id: p.death_disability_sum_fen for p in issued.insured}
    assert {p.resident_id: p.death_disability_sum_fen for p in policy.insured} == shares
    assert policy.renamed == []


def test_after_cover_starts_a_name_correction_keeps_every_id_number():
    file, issued = on_file()
    head, wife, kid = family()
    renamed_kid = kid.model_copy(update={"name": "王晓明"})

    policy = amended(decide_correction(corrected(head, wife, renamed_kid), REGISTERED, file, holding(issued),
                                       AFTER_START))

    assert [p.name for p in policy.insured][2] == "王晓明"
    assert policy.renamed == []


def test_after_cover_starts_a_correction_of_the_payer_or_units_is_refused_cover_started():
    file, issued = on_file()

    for change in ({"payer": Payer.self_paid}, {"units": 2}, {"paid_on": date(2024, 2, 20)}):
        assert refused(decide_correction(corrected(**change), REGISTERED, file, holding(issued), AFTER_START)) == [
            "cover_started"]


def test_after_cover_starts_a_correction_that_insures_another_number_of_persons_is_refused_cover_started():
    file, issued = on_file()
    head, wife, kid = family()

    assert refused(decide_correction(corrected(head, wife), REGISTERED, file, holding(issued), AFTER_START)) == [
        "cover_started"]
    newborn = child(date(2023, 12, 1), 32)
    assert refused(decide_correction(corrected(head, wife, kid, newborn), REGISTERED, file, holding(issued),
                                     AFTER_START)) == ["cover_started"]


def test_after_cover_starts_a_correction_that_puts_another_relation_in_a_persons_place_is_refused():
    file, issued = on_file()
    head, wife, _ = family()
    another_spouse = spouse(date(1983, 8, 15), 24)

    assert refused(decide_correction(corrected(head, wife, another_spouse), REGISTERED, file, holding(issued),
                                     AFTER_START)) == ["cover_started"]


def test_after_cover_starts_a_correction_of_both_a_persons_name_and_id_number_is_refused_as_another_person():
    # Fixing a typo changes one of the two; changing both puts someone else in the insured's place.
    file, issued = on_file()
    _, wife, kid = family()
    stranger = member(date(1979, 2, 3), 57, name="赵某")

    assert refused(decide_correction(corrected(stranger, wife, kid), REGISTERED, file, holding(issued),
                                     AFTER_START)) == ["cover_started"]


def test_a_wrong_township_correction_moves_the_policy_and_says_where_it_counted_before():
    file, issued = on_file()

    policy = amended(decide_correction(corrected(township="xuefeng", village=None), REGISTERED, file, holding(issued),
                                       AFTER_START))

    assert (policy.township, policy.village, policy.policy_number) == ("xuefeng", None, issued.policy_number)
    assert policy.previous.township == "chengguan"


# --- what a correction must name -------------------------------------------------------------------


def test_a_correction_naming_no_registration_of_this_household_is_refused_correction_target_unknown():
    file, issued = on_file()

    assert refused(decide_correction(corrected(), None, file, holding(issued), BEFORE_COVER)) == [
        "correction_target_unknown"]
    assert refused(decide_correction(corrected(), uuid.uuid4(), file, holding(issued), BEFORE_COVER)) == [
        "correction_target_unknown"]


def test_a_correction_naming_a_registration_a_later_correction_replaced_is_refused_correction_superseded():
    file, issued = on_file()
    first = corrected(township="xuefeng")
    first_id = uuid.uuid4()
    file.record(first_id, None, BEFORE_COVER, first)
    file.record(uuid.uuid4(), first_id, BEFORE_COVER, amended(decide_correction(first, REGISTERED, file, holding(issued),
                                                                                 BEFORE_COVER)))

    assert refused(decide_correction(corrected(), REGISTERED, file, holding(issued), BEFORE_COVER)) == [
        "correction_superseded"]
    assert amended(decide_correction(corrected(), first_id, file, holding(issued), BEFORE_COVER)).township == "chengguan"


def test_a_correction_of_a_rejected_registration_is_refused_no_policy_in_force():
    file = HouseholdFile()
    file.record(REGISTERED, None, ISSUED_AT, registration())

    assert refused(decide_correction(corrected(), REGISTERED, file, EnrollmentState(), BEFORE_COVER)) == [
        "no_policy_in_force"]


def test_a_correction_that_would_insure_nobody_is_refused_with_the_registrations_reasons():
    file, issued = on_file()
    too_old = member(date(1940, 1, 1), 13)

    outcome = decide_correction(corrected(too_old), REGISTERED, file, holding(issued), BEFORE_COVER)

    assert refused(outcome) == ["no_eligible_member"]
    assert outcome.excluded == [ExcludedMember(resident_id=too_old.resident_id, reason="too_old")]  # type: ignore[union-attr]


# --- cancellation ----------------------------------------------------------------------------------


def cancellation(reason: str = "registered_in_error") -> PolicyCancellationRequested:
    return PolicyCancellationRequested(household_id="H1", programme_year=YEAR, reason=reason)


def test_a_policy_is_cancelled_before_its_cover_starts_with_the_countys_reason():
    file, issued = on_file()

    outcome = decide_cancellation(cancellation("household_withdrew"), file, BEFORE_COVER)

    assert isinstance(outcome, PolicyCancelled)
    assert (outcome.policy_number, outcome.reason) == (issued.policy_number, "household_withdrew")
    assert outcome.previous.insured_persons == 3 and outcome.previous.premium_fen == 100_00


def test_a_policy_whose_cover_has_started_is_not_cancelled():
    file, _ = on_file()

    assert refused(decide_cancellation(cancellation(), file, AFTER_START)) == ["cover_started"]


def test_a_cancelled_policy_cannot_be_cancelled_or_corrected_again():
    file, issued = on_file()
    file.record(uuid.uuid4(), uuid.uuid4(), BEFORE_COVER, decide_cancellation(cancellation(), file, BEFORE_COVER))

    assert refused(decide_cancellation(cancellation(), file, BEFORE_COVER)) == ["no_policy_in_force"]
    assert refused(decide_correction(corrected(), REGISTERED, file, holding(issued), BEFORE_COVER)) == [
        "no_policy_in_force"]


# --- what enrollment then holds ---------------------------------------------------------------------


def test_after_an_amendment_the_corrected_id_is_insured_and_the_old_one_is_free():
    file, issued = on_file()
    head, wife, kid = family()
    right_head = member(HEAD_BIRTH, 12)
    state = holding(issued)

    evolve(state, decide_correction(corrected(right_head, wife, kid), REGISTERED, file, state, AFTER_START))

    assert (YEAR, right_head.resident_id) in state.insured_persons
    assert (YEAR, head.resident_id) not in state.insured_persons


def test_after_a_cancellation_the_persons_are_free_to_be_insured_on_another_policy():
    file, issued = on_file()
    state = holding(issued)

    evolve(state, decide_cancellation(cancellation(), file, BEFORE_COVER))

    assert state.insured_persons == {}
    other = decide(registration(household_id="H2"), state)
    assert isinstance(other, PolicyIssued) and other.excluded == []


def test_the_file_keeps_the_first_issue_time_through_amendments():
    file, issued = on_file()
    first = corrected(township="xuefeng")
    file.record(uuid.uuid4(), REGISTERED, AFTER_START, amended(decide_correction(first, REGISTERED, file,
                                                                                 holding(issued), AFTER_START)))

    assert file.issued_at == ISSUED_AT and file.policy is not None and file.policy.township == "xuefeng"


def test_after_cover_starts_a_corrected_id_number_that_is_not_valid_is_refused():
    file, issued = on_file()
    _, wife, kid = family()
    wrong = member(number=with_wrong_check_character(resident_id(HEAD_BIRTH, 12)))

    outcome = decide_correction(corrected(wrong, wife, kid), REGISTERED, file, holding(issued), AFTER_START)

    assert refused(outcome) == ["cover_started"]  # the head would be left out: another number of persons
