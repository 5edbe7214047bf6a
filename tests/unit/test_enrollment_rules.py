"""Enrolment rules (services/enrollment/decider.py), as given/when/then: given the outcomes already
recorded, when a household is registered, then one PolicyIssued or one HouseholdRejected.

Ages (DOMAIN.md, Mingxi 2020 section 三) are 周岁 on the first day of cover; a 29 February birth
date has its birthday on 1 March in a common year (the rule written in shared/domain/calendar.py).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from services.enrollment.decider import EnrollmentState, decide, evolve
from shared.domain.calendar import CST
from shared.events.enrollment import ExcludedMember, HouseholdRejected, PolicyIssued, Relation
from tests.unit.builders import (
    FIRST_DAY,
    ISSUED_ON,
    YEAR,
    child,
    issued_on_for_first_day,
    member,
    policy,
    registration,
    resident_id,
    resident_id_ending_in_x,
    spouse,
    with_impossible_birth_date,
    with_wrong_check_character,
)


def given(*events: PolicyIssued | HouseholdRejected) -> EnrollmentState:
    state = EnrollmentState()
    for event in events:
        evolve(state, event)
    return state


def issued(outcome: PolicyIssued | HouseholdRejected) -> PolicyIssued:
    assert isinstance(outcome, PolicyIssued), f"expected a policy, got {outcome!r}"
    return outcome


def rejected(outcome: PolicyIssued | HouseholdRejected) -> HouseholdRejected:
    assert isinstance(outcome, HouseholdRejected), f"expected a rejection, got {outcome!r}"
    return outcome


def insured_ids(policy: PolicyIssued) -> list[str]:
    return [p.resident_id for p in policy.insured]


def born_years_before(first_day: date, years: int, days_later: int = 0) -> date:
    """The birth date of someone whose ``years``-th birthday falls ``days_later`` days after ``first_day``."""
    return first_day.replace(year=first_day.year - years) + timedelta(days=days_later)


def registered_with(person, **kwargs):  # type: ignore[no-untyped-def]
    """A household of a head of 40 and ``person`` (so that one exclusion never empties it)."""
    return registration(member(date(1984, 1, 1)), person, **kwargs)


# --- issuing a policy ---------------------------------------------------------------------------


def test_issues_one_policy_insuring_every_eligible_member_in_the_order_listed():
    reg = registration()

    policy = issued(decide(reg, given()))

    assert insured_ids(policy) == [m.resident_id for m in reg.members]
    assert [p.relation for p in policy.insured] == [Relation.head, Relation.spouse, Relation.child]
    assert policy.excluded == []


def test_policy_carries_the_household_its_year_area_category_and_payer():
    reg = registration(household_id="H77", township="xuefeng", village="xuefeng-03")

    policy = issued(decide(reg, given()))

    assert (policy.household_id, policy.programme_year) == ("H77", YEAR)
    assert (policy.township, policy.village) == ("xuefeng", "xuefeng-03")
    assert (policy.category, policy.payer, policy.issued_on) == (reg.category, reg.payer, ISSUED_ON)


def test_three_members_share_200000_yuan_with_the_leftover_fen_to_the_first_listed():
    policy = issued(decide(registration(), given()))

    assert [p.death_disability_sum_fen for p in policy.insured] == [6666667, 6666667, 6666666]


def test_the_leftover_fen_follow_the_order_the_members_are_listed_in():
    kid, mother, father = child(), spouse(), member()

    policy = issued(decide(registration(kid, mother, father), given()))

    assert [(p.resident_id, p.death_disability_sum_fen) for p in policy.insured] == [
        (kid.resident_id, 6666667), (mother.resident_id, 6666667), (father.resident_id, 6666666)]


def test_a_single_insured_member_holds_the_whole_200000_yuan():
    policy = issued(decide(registration(member()), given()))

    assert [p.death_disability_sum_fen for p in policy.insured] == [200_000_00]


@pytest.mark.parametrize("units", [1, 2, 5])
def test_each_unit_costs_100_yuan_of_premium(units):
    policy = issued(decide(registration(units=units), given()))

    assert policy.units == units
    assert policy.premium_fen == 100_00 * units


@pytest.mark.parametrize("units", [1, 2, 5])
def test_each_unit_adds_200000_yuan_of_death_and_disability_cover_split_exactly(units):
    policy = issued(decide(registration(units=units), given()))

    shares = [p.death_disability_sum_fen for p in policy.insured]
    assert sum(shares) == 200_000_00 * units
    assert max(shares) - min(shares) <= 1


def test_two_units_for_three_members_split_400000_yuan_to_the_fen():
    policy = issued(decide(registration(units=2), given()))

    assert [p.death_disability_sum_fen for p in policy.insured] == [13333334, 13333333, 13333333]


@pytest.mark.parametrize("units", [1, 2, 5])
def test_each_unit_adds_14000_yuan_to_the_household_medical_limit(units):
    policy = issued(decide(registration(units=units), given()))

    assert policy.medical_limit_fen == 14_000_00 * units


def test_cover_starts_at_midnight_china_time_the_day_after_issue():
    policy = issued(decide(registration(paid_on=date(2024, 3, 1)), given()))

    assert policy.cover_start == datetime(2024, 3, 2, 0, 0, tzinfo=CST)
    assert policy.cover_start.utcoffset() == timedelta(hours=8)
    assert policy.cover_start.isoformat() == "2024-03-02T00:00:00+08:00"


def test_cover_ends_at_24_00_on_the_same_date_one_year_on_as_an_exclusive_bound():
    policy = issued(decide(registration(paid_on=date(2024, 3, 1)), given()))

    assert policy.cover_end.isoformat() == "2025-03-02T00:00:00+08:00"  # = 1 March 2025 24:00 CST


def test_policy_issued_on_29_february_ends_on_28_february_of_the_next_year():
    policy = issued(decide(registration(paid_on=date(2024, 2, 29)), given()))

    assert policy.cover_start.isoformat() == "2024-03-01T00:00:00+08:00"
    assert policy.cover_end.isoformat() == "2025-03-01T00:00:00+08:00"  # = 28 February 2025 24:00


def test_policy_records_whether_it_is_a_renewal():
    assert issued(decide(registration(renewal=True), given())).renewal is True
    assert issued(decide(registration(), given())).renewal is False


# --- age on the first day of cover ------------------------------------------------------------


def test_admits_member_who_turns_65_on_the_first_day_of_cover():
    person = member(born_years_before(FIRST_DAY, 65), 13)

    policy = issued(decide(registered_with(person), given()))

    assert person.resident_id in insured_ids(policy)


def test_admits_member_aged_65_whose_66th_birthday_is_the_day_after_cover_starts():
    person = member(born_years_before(FIRST_DAY, 66, days_later=1), 13)

    policy = issued(decide(registered_with(person), given()))

    assert person.resident_id in insured_ids(policy)


def test_rejects_member_older_than_65_on_first_enrolment():
    person = member(born_years_before(FIRST_DAY, 66), 13)  # 66th birthday on the first day of cover

    policy = issued(decide(registered_with(person), given()))

    assert person.resident_id not in insured_ids(policy)
    assert policy.excluded == [ExcludedMember(resident_id=person.resident_id, reason="too_old")]


def test_age_counts_on_the_first_day_of_cover_not_on_the_issue_day():
    person = member(born_years_before(FIRST_DAY, 66), 13)  # still 65 on the issue day, 66 on the first day

    policy = issued(decide(registered_with(person, paid_on=ISSUED_ON), given()))

    assert policy.excluded == [ExcludedMember(resident_id=person.resident_id, reason="too_old")]


def insured_the_year_before(*persons, year: int = YEAR) -> PolicyIssued:  # type: ignore[no-untyped-def]
    """Last programme year's policy of these persons (what a renewal is checked against)."""
    return policy(*(p.resident_id for p in persons), year=year - 1, issued_on=date(year - 1, 3, 1))


def test_renewal_admits_member_aged_70_insured_the_previous_year():
    person = member(born_years_before(FIRST_DAY, 71, days_later=1), 13)  # 71 tomorrow

    policy = issued(decide(registered_with(person, renewal=True), given(insured_the_year_before(person))))

    assert person.resident_id in insured_ids(policy)


def test_renewal_rejects_member_aged_71():
    person = member(born_years_before(FIRST_DAY, 71), 13)

    policy = issued(decide(registered_with(person, renewal=True), given(insured_the_year_before(person))))

    assert policy.excluded == [ExcludedMember(resident_id=person.resident_id, reason="too_old_renewal")]


def test_member_aged_70_claimed_as_renewing_but_not_insured_the_previous_year_is_refused_renewal_not_found():
    person = member(born_years_before(FIRST_DAY, 70), 13)

    policy = issued(decide(registered_with(person, renewal=True), given()))

    assert policy.excluded == [ExcludedMember(resident_id=person.resident_id, reason="renewal_not_found")]


def test_renewal_found_only_in_an_older_year_is_not_found():
    person = member(born_years_before(FIRST_DAY, 66), 13)

    policy = issued(decide(registered_with(person, renewal=True), given(insured_the_year_before(person, year=YEAR - 1))))

    assert policy.excluded == [ExcludedMember(resident_id=person.resident_id, reason="renewal_not_found")]


def test_member_aged_71_claimed_as_renewing_but_not_found_is_too_old_as_a_new_entrant():
    person = member(born_years_before(FIRST_DAY, 71), 13)

    policy = issued(decide(registered_with(person, renewal=True), given()))

    assert policy.excluded == [ExcludedMember(resident_id=person.resident_id, reason="too_old")]


def test_renewal_is_decided_per_member_against_the_previous_year():
    renewing = member(born_years_before(FIRST_DAY, 68), 13, relation=Relation.head)
    new_spouse = spouse(born_years_before(FIRST_DAY, 67))
    new_child = child(born_years_before(FIRST_DAY, 66, days_later=1))  # 65: a new entrant may be insured

    policy = issued(decide(registration(renewing, new_spouse, new_child, renewal=True),
                           given(insured_the_year_before(renewing))))

    assert insured_ids(policy) == [renewing.resident_id, new_child.resident_id]
    assert policy.excluded == [ExcludedMember(resident_id=new_spouse.resident_id, reason="renewal_not_found")]


def test_first_enrolment_refuses_a_member_of_70_whom_a_renewal_would_admit():
    person = member(born_years_before(FIRST_DAY, 70), 13)

    policy = issued(decide(registered_with(person), given()))

    assert policy.excluded == [ExcludedMember(resident_id=person.resident_id, reason="too_old")]


def test_rejects_baby_27_days_old_on_the_first_day_of_cover():
    baby = child(FIRST_DAY - timedelta(days=27))

    policy = issued(decide(registered_with(baby), given()))

    assert policy.excluded == [ExcludedMember(resident_id=baby.resident_id, reason="too_young")]


def test_admits_baby_exactly_28_days_old_on_the_first_day_of_cover():
    baby = child(FIRST_DAY - timedelta(days=28))

    policy = issued(decide(registered_with(baby), given()))

    assert baby.resident_id in insured_ids(policy)


def test_renewal_does_not_relax_the_28_day_minimum():
    baby = child(FIRST_DAY - timedelta(days=27))

    policy = issued(decide(registered_with(baby, renewal=True), given()))

    assert policy.excluded == [ExcludedMember(resident_id=baby.resident_id, reason="too_young")]


def test_member_born_on_29_february_is_still_65_on_28_february_of_a_common_year():
    person = member(date(1960, 2, 29), 13)  # 66th birthday: 1 March 2026 (2026 is a common year)

    policy = issued(decide(registered_with(person, year=2026, paid_on=issued_on_for_first_day(date(2026, 2, 28))),
                           given()))

    assert person.resident_id in insured_ids(policy)


def test_member_born_on_29_february_turns_66_on_1_march_of_a_common_year():
    person = member(date(1960, 2, 29), 13)

    policy = issued(decide(registered_with(person, year=2026, paid_on=issued_on_for_first_day(date(2026, 3, 1))),
                           given()))

    assert policy.excluded == [ExcludedMember(resident_id=person.resident_id, reason="too_old")]


def test_renewal_member_born_on_29_february_turns_71_on_1_march_of_a_common_year():
    person = member(date(1956, 2, 29), 13)  # 71st birthday: 1 March 2027
    on_28_feb = registered_with(person, year=2027, renewal=True, paid_on=issued_on_for_first_day(date(2027, 2, 28)))
    on_1_mar = registered_with(person, year=2027, renewal=True, paid_on=issued_on_for_first_day(date(2027, 3, 1)))
    last_year = given(insured_the_year_before(person, year=2027))

    assert person.resident_id in insured_ids(issued(decide(on_28_feb, last_year)))
    assert issued(decide(on_1_mar, last_year)).excluded == [
        ExcludedMember(resident_id=person.resident_id, reason="too_old_renewal")]


def test_baby_born_on_29_february_is_admitted_28_days_later():
    baby = child(date(2024, 2, 29))

    policy = issued(decide(registered_with(baby, paid_on=issued_on_for_first_day(date(2024, 3, 28))), given()))

    assert baby.resident_id in insured_ids(policy)


def test_baby_born_on_29_february_is_refused_27_days_later():
    baby = child(date(2024, 2, 29))

    policy = issued(decide(registered_with(baby, paid_on=issued_on_for_first_day(date(2024, 3, 27))), given()))

    assert policy.excluded == [ExcludedMember(resident_id=baby.resident_id, reason="too_young")]


# --- resident ID numbers -----------------------------------------------------------------------


def test_excludes_member_with_a_bad_check_character_and_insures_the_others():
    bad = spouse(number=with_wrong_check_character(resident_id(date(1982, 8, 15), 22)))
    head, kid = member(), child()

    policy = issued(decide(registration(head, bad, kid), given()))

    assert insured_ids(policy) == [head.resident_id, kid.resident_id]
    assert policy.excluded == [ExcludedMember(resident_id=bad.resident_id, reason="id_bad_check_character")]


def test_the_remaining_members_share_the_whole_sum_when_one_is_excluded():
    bad = spouse(number=with_wrong_check_character(resident_id(date(1982, 8, 15), 22)))

    policy = issued(decide(registration(member(), bad, child()), given()))

    assert [p.death_disability_sum_fen for p in policy.insured] == [10_000_000, 10_000_000]


def test_excludes_member_whose_id_number_holds_an_impossible_birth_date():
    bad = spouse(number=with_impossible_birth_date())

    policy = issued(decide(registration(member(), bad), given()))

    assert policy.excluded == [ExcludedMember(resident_id=bad.resident_id, reason="id_bad_birth_date")]


def test_excludes_member_whose_stated_birth_date_differs_from_the_id_number():
    wrong = spouse(stated_birth=date(1982, 8, 16))

    policy = issued(decide(registration(member(), wrong), given()))

    assert insured_ids(policy) == [member().resident_id]
    assert policy.excluded == [ExcludedMember(resident_id=wrong.resident_id, reason="birth_date_mismatch")]


def test_accepts_a_lower_case_x_check_character_and_stores_it_upper_case():
    number = resident_id_ending_in_x(date(1982, 8, 15))
    person = spouse(number=number.lower())

    policy = issued(decide(registration(member(), person), given()))

    assert insured_ids(policy) == [member().resident_id, number]
    assert number.endswith("X")


def test_an_excluded_member_is_recorded_upper_case():
    number = resident_id_ending_in_x(date(1982, 8, 15))
    person = spouse(number=number.lower(), stated_birth=date(1982, 8, 16))

    policy = issued(decide(registration(member(), person), given()))

    assert policy.excluded == [ExcludedMember(resident_id=number, reason="birth_date_mismatch")]


# --- one person, one household, once a year ----------------------------------------------------


def test_excludes_the_second_listing_of_the_same_person_in_one_household():
    head = member()

    policy = issued(decide(registration(head, spouse(), head), given()))

    assert insured_ids(policy) == [head.resident_id, spouse().resident_id]
    assert policy.excluded == [ExcludedMember(resident_id=head.resident_id, reason="duplicate_member")]


def test_the_same_person_listed_with_lower_and_upper_case_x_is_a_duplicate():
    number = resident_id_ending_in_x(date(1982, 8, 15))

    policy = issued(decide(registration(member(), spouse(number=number), spouse(number=number.lower())), given()))

    assert insured_ids(policy) == [member().resident_id, number]
    assert policy.excluded == [ExcludedMember(resident_id=number, reason="duplicate_member")]


def test_excludes_a_person_already_insured_that_year_in_another_household():
    other = issued(decide(registration(spouse(), household_id="H2"), given()))
    history = given(other)

    policy = issued(decide(registration(member(), spouse(), child()), history))

    assert insured_ids(policy) == [member().resident_id, child().resident_id]
    assert policy.excluded == [ExcludedMember(resident_id=spouse().resident_id, reason="already_insured")]


def test_a_person_insured_with_lower_case_x_is_already_insured_under_the_upper_case_number():
    number = resident_id_ending_in_x(date(1982, 8, 15))
    history = given(issued(decide(registration(spouse(number=number), household_id="H2"), given())))

    policy = issued(decide(registration(member(), spouse(number=number.lower())), history))

    assert policy.excluded == [ExcludedMember(resident_id=number, reason="already_insured")]


def test_insures_a_person_again_in_the_next_programme_year():
    history = given(issued(decide(registration(spouse(), household_id="H2", year=2024), given())))

    policy = issued(decide(registration(member(), spouse(), year=2025, paid_on=date(2025, 3, 1)), history))

    assert spouse().resident_id in insured_ids(policy)
    assert policy.excluded == []


def test_rejects_a_household_with_no_eligible_member_and_lists_every_exclusion():
    too_old = member(born_years_before(FIRST_DAY, 66), 13)
    bad = spouse(number=with_wrong_check_character(resident_id(date(1982, 8, 15), 22)))
    too_young = child(FIRST_DAY - timedelta(days=10))

    outcome = rejected(decide(registration(too_old, bad, too_young, household_id="H9"), given()))

    assert outcome.reasons == ["no_eligible_member"]
    assert (outcome.household_id, outcome.programme_year, outcome.township) == ("H9", YEAR, "chengguan")
    assert outcome.excluded == [
        ExcludedMember(resident_id=too_old.resident_id, reason="too_old"),
        ExcludedMember(resident_id=bad.resident_id, reason="id_bad_check_character"),
        ExcludedMember(resident_id=too_young.resident_id, reason="too_young"),
    ]


def test_rejects_a_household_whose_only_members_are_already_insured_elsewhere():
    history = given(issued(decide(registration(member(), household_id="H2"), given())))

    outcome = rejected(decide(registration(member()), history))

    assert outcome.reasons == ["no_eligible_member"]
    assert outcome.excluded == [ExcludedMember(resident_id=member().resident_id, reason="already_insured")]


def test_rejects_the_same_household_a_second_time_in_one_year():
    history = given(issued(decide(registration(), given())))

    outcome = rejected(decide(registration(child(date(2015, 6, 1), 41)), history))

    assert outcome.reasons == ["household_already_insured"]
    assert outcome.excluded == []


def test_insures_the_same_household_again_the_next_year():
    history = given(issued(decide(registration(year=2024), given())))

    policy = issued(decide(registration(year=2025, paid_on=date(2025, 3, 1)), history))

    assert policy.programme_year == 2025
    assert len(policy.insured) == 3


def test_a_rejected_household_may_register_again_in_the_same_year():
    too_old = member(born_years_before(FIRST_DAY, 66), 13)
    history = given(rejected(decide(registration(too_old), given())))

    policy = issued(decide(registration(), history))

    assert len(policy.insured) == 3


def test_the_same_household_number_in_another_year_does_not_block_this_year():
    history = given(issued(decide(registration(year=2023, paid_on=date(2023, 3, 1)), given())))

    assert isinstance(decide(registration(year=2024), history), PolicyIssued)


# --- policy numbers and purity -----------------------------------------------------------------


def test_policy_number_is_made_of_the_year_township_and_household():
    policy = issued(decide(registration(household_id="H42", township="hanxian"), given()))

    assert policy.policy_number == "P2024-hanxian-H42"


def test_households_whose_parts_join_to_the_same_text_get_distinct_policy_numbers():
    first = issued(decide(registration(township="A-B", household_id="C"), given()))

    second = issued(decide(registration(member(sequence=41), township="A", household_id="B-C"), given(first)))

    assert (first.policy_number, second.policy_number) == ("P2024-A%2DB-C", "P2024-A-B-C")


def test_a_policy_number_escapes_the_escape_character_in_the_township_too():
    first = issued(decide(registration(township="A%2DB", household_id="C"), given()))
    second = issued(decide(registration(member(sequence=41), township="A-B", household_id="C2"), given(first)))

    assert (first.policy_number, second.policy_number) == ("P2024-A%252DB-C", "P2024-A%2DB-C2")


def test_a_policy_number_too_long_for_a_stream_id_is_the_year_and_a_digest():
    long_parts = registration(township="-" * 80, household_id="H" * 80)

    number = issued(decide(long_parts, given())).policy_number

    assert number.startswith("P2024-") and number.count("-") == 1 and len(number) == 38
    assert number != issued(decide(registration(township="-" * 80, household_id="H" * 79), given())).policy_number


def test_a_registration_whose_number_was_issued_before_in_the_old_form_is_rejected_policy_number_taken():
    # Issued before townships were escaped: household "C" of township "A-B" read "P2024-A-B-C",
    # which is what household "B-C" of township "A" reads now.
    old = policy(policy_number="P2024-A-B-C", township="A-B", household_id="C")

    outcome = rejected(decide(registration(member(sequence=41), township="A", household_id="B-C"), given(old)))

    assert outcome.reasons == ["policy_number_taken"]


def test_deciding_the_same_registration_again_issues_the_identical_policy():
    reg = registration()

    assert decide(reg, given()) == decide(reg, given())


def test_different_households_get_different_policy_numbers():
    first = issued(decide(registration(household_id="H1"), given()))
    second = issued(decide(registration(household_id="H2"), given()))

    assert first.policy_number != second.policy_number


def test_deciding_does_not_change_the_state():
    state = given(issued(decide(registration(spouse(), household_id="H2"), given())))
    before = (set(state.insured_households), dict(state.insured_persons))

    decide(registration(), state)

    assert (state.insured_households, state.insured_persons) == before


def test_a_rejection_changes_nothing_in_the_state():
    state = given(rejected(decide(registration(member(born_years_before(FIRST_DAY, 66), 13)), given())))

    assert state == EnrollmentState()
