"""Subsidy rules (services/subsidy/decider.py), as given/when/then.

History is what the subsidy service has seen and recorded: plans published, policies issued,
policies deferred, approvals and disbursements. A ``PolicyIssued`` followed by its
``SubsidyDeferred`` leaves the policy waiting for its year's plan (what the handler keeps).
"""

from __future__ import annotations

from datetime import date

import pytest

from services.subsidy.decider import SubsidyState, decide_close, decide_plan, decide_policy, defer, evolve
from shared.events.enrollment import HouseholdCategory, PolicyIssued
from shared.events.subsidy import (
    LineTotal,
    SubsidyApproved,
    SubsidyDeferred,
    SubsidyDisbursed,
    SubsidyPlanCloseRequested,
    SubsidyPlanRequestRefused,
    SubsidyRejected,
)
from tests.unit.builders import (
    PRIORITY,
    SPECIAL,
    approved,
    hongta_lines,
    line,
    nth_resident_id,
    plan,
    policies_of,
    policy,
)

CLOSED_ON = date(2024, 4, 30)


def given(*events) -> SubsidyState:  # type: ignore[no-untyped-def]
    state = SubsidyState()
    seen: dict[str, PolicyIssued] = {}
    for event in events:
        if isinstance(event, PolicyIssued):
            seen[event.policy_number] = event
        elif isinstance(event, SubsidyDeferred):
            defer(state, seen[event.policy_number])
        evolve(state, event)
    return state


def deciding(state: SubsidyState, *policies: PolicyIssued) -> list:  # type: ignore[type-arg]
    """Decide each policy in turn and fold what follows (as the handler does); all outcomes."""
    out: list = []  # type: ignore[type-arg]
    for p in policies:
        decided = decide_policy(p, state)
        for event in decided:
            evolve(state, event)
            if isinstance(event, SubsidyDeferred):
                defer(state, p)
        out.extend(decided)
    return out


def close(plan_id: str = "HT-2024") -> SubsidyPlanCloseRequested:
    return SubsidyPlanCloseRequested(plan_id=plan_id, closed_on=CLOSED_ON)


def persons(n: int, first: int = 0) -> list[str]:
    return [nth_resident_id(first + i) for i in range(n)]


def reasons(events: list) -> list:  # type: ignore[type-arg]
    return [e.reason if isinstance(e, SubsidyRejected) else "approved" for e in events]


SMALL = plan(line("priority", PRIORITY, rate_fen=40_00, head_cap=3),
             line("special", SPECIAL, rate_fen=50_00, head_cap=2))


# --- approvals at the line rate ------------------------------------------------------------------


def test_rejects_further_persons_once_the_policys_subsidies_would_exceed_its_premium():
    family = policy(*persons(3), category=HouseholdCategory.poor)  # 100 yuan: 40 + 40, and 40 more would be 120

    events = decide_policy(family, given(SMALL))

    assert reasons(events) == ["approved", "approved", "premium_covered"]
    assert sum(e.amount_fen for e in events if isinstance(e, SubsidyApproved)) <= family.premium_fen


def test_subsidies_may_add_up_to_exactly_the_premium():
    bereaved = policy(*persons(3), category=HouseholdCategory.lost_only_child)  # 50 + 50 = 100 yuan

    assert reasons(decide_policy(bereaved, given(SMALL))) == ["approved", "approved", "premium_covered"]


def test_a_policy_of_two_units_takes_subsidies_up_to_its_two_unit_premium():
    family = policy(*persons(5), category=HouseholdCategory.poor, units=2)  # 5 x 40 = 200 yuan
    roomy = plan(line("priority", PRIORITY, rate_fen=40_00, head_cap=10))

    assert reasons(decide_policy(family, given(roomy))) == ["approved"] * 5


def test_a_person_refused_because_the_premium_is_covered_uses_none_of_the_lines_head_count():
    state = given(SMALL)  # priority cap 3
    first = deciding(state, policy(*persons(3), household_id="H1"))
    second = deciding(state, policy(*persons(1, first=10), household_id="H2"))

    assert (reasons(first), reasons(second)) == (["approved", "approved", "premium_covered"], ["approved"])


def test_a_deferred_policy_is_capped_at_its_premium_when_its_plan_arrives():
    family = policy(*persons(3), category=HouseholdCategory.poor)
    history = given(family, *decide_policy(family, given()))

    assert reasons(decide_plan(SMALL, history)) == ["approved", "approved", "premium_covered"]


def test_approves_each_insured_person_at_the_line_rate():
    family = policy(*persons(3), category=HouseholdCategory.poor, units=2)  # 200 yuan of premium: room for 3 x 40

    events = decide_policy(family, given(SMALL))

    assert events == [
        SubsidyApproved(plan_id="HT-2024", programme_year=2024, line="priority", policy_number=family.policy_number,
                        township="chengguan", resident_id=number, amount_fen=40_00)
        for number in persons(3)
    ]


@pytest.mark.parametrize("category", SPECIAL)
def test_special_families_are_approved_at_50_yuan_a_person(category):
    events = decide_policy(policy(*persons(2), category=category), given(SMALL))

    assert [(e.line, e.amount_fen) for e in events] == [("special", 50_00), ("special", 50_00)]


def test_rejects_persons_once_the_line_head_count_cap_is_reached():
    earlier = policy(*persons(2), household_id="H1")
    history = given(SMALL, earlier, *(approved(earlier, n) for n in persons(2)))

    events = decide_policy(policy(*persons(2, first=10), household_id="H2"), history)

    assert reasons(events) == ["approved", "head_cap_reached"]


def test_the_head_count_cap_counts_persons_approved_earlier_in_the_same_policy():
    events = decide_policy(policy(*persons(4), units=2), given(SMALL))

    assert reasons(events) == ["approved", "approved", "approved", "head_cap_reached"]


def test_rejects_persons_when_the_budget_is_used_up_before_the_head_count_cap():
    tight = plan(line("priority", PRIORITY, rate_fen=40_00, head_cap=10, budget_fen=80_00))

    events = decide_policy(policy(*persons(3), units=2), given(tight))

    assert reasons(events) == ["approved", "approved", "budget_exhausted"]


def test_a_budget_that_is_no_multiple_of_the_rate_never_pays_part_of_a_rate():
    odd = plan(line("priority", PRIORITY, rate_fen=40_00, head_cap=10, budget_fen=100_00))

    events = decide_policy(policy(*persons(3), units=2), given(odd))

    assert [e.amount_fen for e in events if isinstance(e, SubsidyApproved)] == [40_00, 40_00]
    assert reasons(events)[-1] == "budget_exhausted"


def test_the_budget_counts_approvals_already_recorded():
    tight = plan(line("priority", PRIORITY, rate_fen=40_00, head_cap=10, budget_fen=80_00))
    earlier = policy(*persons(1), household_id="H1")
    history = given(tight, earlier, approved(earlier, persons(1)[0]))

    events = decide_policy(policy(*persons(2, first=10), household_id="H2"), history)

    assert reasons(events) == ["approved", "budget_exhausted"]


def test_one_line_reaching_its_cap_leaves_the_other_line_open():
    earlier = policy(*persons(3), household_id="H1")
    history = given(SMALL, earlier, *(approved(earlier, n) for n in persons(3)))

    events = decide_policy(policy(*persons(2, first=10), household_id="H2", category=HouseholdCategory.lost_only_child),
                           history)

    assert reasons(events) == ["approved", "approved"]


def test_rejects_a_person_already_subsidised_that_year_in_another_policy():
    earlier = policy(*persons(1), household_id="H1")
    history = given(SMALL, earlier, approved(earlier, persons(1)[0]))

    events = decide_policy(policy(*persons(2), household_id="H2"), history)

    assert reasons(events) == ["already_subsidised", "approved"]


def test_rejects_the_same_person_listed_twice_in_one_policy():
    twice = policy(persons(1)[0], persons(1)[0], persons(1, first=5)[0])

    events = decide_policy(twice, given(SMALL))

    assert reasons(events) == ["approved", "already_subsidised", "approved"]


def test_a_person_refused_as_already_subsidised_does_not_use_up_the_cap():
    earlier = policy(*persons(1), household_id="H1")
    history = given(SMALL, earlier, approved(earlier, persons(1)[0]))

    events = decide_policy(policy(*persons(3), household_id="H2"), history)

    assert reasons(events) == ["already_subsidised", "approved", "approved"]


def test_subsidises_the_same_person_again_in_the_next_year():
    last_year = policy(*persons(1), year=2024)
    history = given(SMALL, plan(plan_id="HT-2025", year=2025), last_year, approved(last_year, persons(1)[0]))

    events = decide_policy(policy(*persons(1), year=2025), history)

    assert [(type(e), e.plan_id, e.programme_year) for e in events] == [(SubsidyApproved, "HT-2025", 2025)]


def test_rejects_every_person_of_a_priority_category_that_no_line_covers():
    without_poverty_relief = plan(line("priority", [HouseholdCategory.poor], head_cap=10))
    family = policy(*persons(2), category=HouseholdCategory.poverty_relief)

    events = decide_policy(family, given(without_poverty_relief))

    assert events == [
        SubsidyRejected(plan_id="HT-2024", programme_year=2024, policy_number=family.policy_number,
                        township="chengguan", resident_id=number, reason="not_in_plan")
        for number in persons(2)
    ]


@pytest.mark.parametrize("category", [HouseholdCategory.general, HouseholdCategory.agency_staff])
def test_households_that_are_never_subsidy_candidates_yield_no_events(category):
    assert decide_policy(policy(*persons(3), category=category), given(SMALL)) == []


@pytest.mark.parametrize("category", [HouseholdCategory.general, HouseholdCategory.agency_staff])
def test_households_that_are_never_subsidy_candidates_are_not_deferred_either(category):
    assert decide_policy(policy(*persons(3), category=category), given()) == []


# --- policies before their year's plan ------------------------------------------------------------


def test_defers_a_policy_that_arrives_before_any_plan_for_its_year():
    family = policy(*persons(3), household_id="H5", township="hongta-yuxi")

    events = decide_policy(family, given())

    assert events == [SubsidyDeferred(policy_number=family.policy_number, programme_year=2024,
                                      township="hongta-yuxi", persons=3)]


def test_defers_a_policy_whose_year_has_no_plan_even_when_another_year_has_one():
    events = decide_policy(policy(*persons(1), year=2025), given(SMALL))

    assert [type(e) for e in events] == [SubsidyDeferred]


def test_publishing_the_plan_approves_the_deferred_policies_in_arrival_order_within_the_caps():
    first, second, third = (policy(*persons(2, first=10 * i), household_id=f"H{i}") for i in range(3))
    history = given(*(e for p in (first, second, third) for e in (p, *decide_policy(p, given()))))

    events = decide_plan(SMALL, history)

    assert [(e.policy_number, e.resident_id) for e in events] == [
        (p.policy_number, n.resident_id) for p in (first, second, third) for n in p.insured]
    assert reasons(events) == ["approved", "approved", "approved", "head_cap_reached", "head_cap_reached",
                               "head_cap_reached"]


def test_publishing_the_plan_decides_deferred_special_families_on_their_own_line():
    ordinary = policy(*persons(2), household_id="H1")
    bereaved = policy(*persons(2, first=10), household_id="H2", category=HouseholdCategory.lost_only_child)
    history = given(ordinary, *decide_policy(ordinary, given()), bereaved, *decide_policy(bereaved, given()))

    events = decide_plan(SMALL, history)

    assert [(e.line, e.amount_fen) for e in events] == [("priority", 40_00)] * 2 + [("special", 50_00)] * 2


def test_publishing_the_plan_rejects_deferred_persons_whose_category_is_in_no_line():
    family = policy(*persons(1), category=HouseholdCategory.poverty_relief)
    history = given(family, *decide_policy(family, given()))

    events = decide_plan(plan(line("priority", [HouseholdCategory.poor])), history)

    assert reasons(events) == ["not_in_plan"]


def test_a_person_in_two_deferred_policies_is_subsidised_once():
    first = policy(persons(1)[0], household_id="H1")
    second = policy(persons(1)[0], household_id="H2")
    history = given(first, *decide_policy(first, given()), second, *decide_policy(second, given()))

    events = decide_plan(SMALL, history)

    assert [(e.policy_number, reasons([e])[0]) for e in events] == [
        (first.policy_number, "approved"), (second.policy_number, "already_subsidised")]


def test_publishing_a_plan_leaves_deferred_policies_of_other_years_waiting():
    next_year = policy(*persons(2), year=2025)
    history = given(next_year, *decide_policy(next_year, given()))

    assert decide_plan(SMALL, history) == []


def test_a_plan_with_nothing_deferred_yields_no_events():
    assert decide_plan(SMALL, given()) == []


def test_publishing_a_plan_does_not_change_the_state():
    family = policy(*persons(2))
    state = given(family, *decide_policy(family, given()))

    decide_plan(SMALL, state)

    assert (state.plans, state.plan_of_year, state.subsidised) == ({}, {}, set())
    assert state.deferred == {2024: [family]}


def test_once_its_plan_is_recorded_a_deferred_policy_is_counted_once():
    family = policy(*persons(2))
    waiting = (family, *decide_policy(family, given()))
    history = given(*waiting, SMALL, *decide_plan(SMALL, given(*waiting)))

    (event,) = decide_close(close(), history)

    assert history.deferred == {}
    assert (event.persons, event.amount_fen) == (2, 2 * 40_00)


# --- publishing and closing plans ------------------------------------------------------------------


def test_refuses_a_second_plan_for_a_year_that_has_one():
    events = decide_plan(plan(plan_id="HT-2024-revised"), given(SMALL))

    assert events == [SubsidyPlanRequestRefused(plan_id="HT-2024-revised", request="publish", reason="year_has_plan")]


def test_refuses_to_publish_a_plan_again():
    events = decide_plan(SMALL, given(SMALL))

    assert events == [SubsidyPlanRequestRefused(plan_id="HT-2024", request="publish", reason="plan_exists")]


def test_closing_a_plan_disburses_the_lump_sum_to_the_insurer_with_totals_per_line():
    ordinary = policy(*persons(3), household_id="H1")
    bereaved = policy(*persons(2, first=10), household_id="H2", category=HouseholdCategory.only_child_disabled)
    history = given(SMALL, ordinary, *(approved(ordinary, n) for n in persons(2)), bereaved,
                    approved(bereaved, persons(1, first=10)[0], line_code="special", amount_fen=50_00))

    events = decide_close(close(), history)

    assert events == [SubsidyDisbursed(
        plan_id="HT-2024", programme_year=2024, insurer=SMALL.insurer, disbursed_on=CLOSED_ON, persons=3,
        amount_fen=2 * 40_00 + 50_00,
        lines=[LineTotal(line="priority", persons=2, amount_fen=80_00),
               LineTotal(line="special", persons=1, amount_fen=50_00)],
    )]


def test_closing_a_plan_with_no_approvals_disburses_nothing_but_says_so():
    (event,) = decide_close(close(), given(SMALL))

    assert isinstance(event, SubsidyDisbursed)
    assert (event.persons, event.amount_fen) == (0, 0)
    assert event.lines == [LineTotal(line="priority", persons=0, amount_fen=0),
                           LineTotal(line="special", persons=0, amount_fen=0)]


def test_rejected_persons_are_not_paid_for_in_the_lump_sum():
    state = given(SMALL)
    outcomes = deciding(state, policy(*persons(5), units=2))  # cap 3: two are refused

    (event,) = decide_close(close(), state)

    assert reasons(outcomes).count("head_cap_reached") == 2
    assert (event.persons, event.amount_fen) == (3, 3 * 40_00)


def test_closing_a_plan_twice_yields_nothing_the_second_time():
    state = given(SMALL)
    first = decide_close(close(), state)
    for event in first:
        evolve(state, event)

    assert decide_close(close(), state) == []


def test_refuses_to_close_an_unknown_plan():
    assert decide_close(close("HT-1999"), given(SMALL)) == [
        SubsidyPlanRequestRefused(plan_id="HT-1999", request="close", reason="unknown_plan")]


def test_approvals_stop_once_the_plan_is_closed():
    history = given(SMALL, *decide_close(close(), given(SMALL)))

    events = decide_policy(policy(*persons(2)), history)

    assert reasons(events) == ["plan_closed", "plan_closed"]


def test_deciding_a_policy_does_not_change_the_state():
    state = given(SMALL)

    decide_policy(policy(*persons(3)), state)

    assert state.plans["HT-2024"].usage == {}
    assert state.subsidised == set()


# --- the Hongta 2024 budget -----------------------------------------------------------------------


def test_hongta_2024_scaled_down_pays_each_line_its_rate_up_to_its_cap():
    state = given(plan(*hongta_lines(priority_cap=32, special_cap=4)))  # 1% of the head counts
    deciding(state, *policies_of(40, 2), *policies_of(6, 2, first=1000, category=HouseholdCategory.lost_only_child,
                                                      prefix="S"))

    (event,) = decide_close(close(), state)

    assert event.lines == [LineTotal(line="priority", persons=32, amount_fen=32 * 40_00),
                           LineTotal(line="special", persons=4, amount_fen=4 * 50_00)]


def test_hongta_2024_pays_128000_yuan_for_3200_persons_and_22200_yuan_for_444():
    state = given(plan())
    # Households of two: 2 x 40 and 2 x 50 yuan stay within a 100-yuan premium.
    ordinary = policies_of(3_200, 2)
    lost_only_child = policies_of(282, 2, first=10_000, category=HouseholdCategory.lost_only_child, prefix="L")
    only_child_disabled = policies_of(162, 2, first=20_000, category=HouseholdCategory.only_child_disabled, prefix="D")
    over_the_caps = [policy(*persons(1, first=30_000), household_id="X1"),
                     policy(*persons(1, first=30_001), household_id="X2", category=HouseholdCategory.lost_only_child)]

    outcomes = deciding(state, *ordinary, *lost_only_child, *only_child_disabled, *over_the_caps)
    (event,) = decide_close(close(), state)

    assert reasons(outcomes)[-2:] == ["head_cap_reached", "head_cap_reached"]
    assert event.lines == [LineTotal(line="priority", persons=3_200, amount_fen=128_000_00),
                           LineTotal(line="special", persons=444, amount_fen=22_200_00)]
    assert (event.persons, event.amount_fen) == (3_644, 150_200_00)
    assert event.insurer == "中国人寿保险股份有限公司玉溪市红塔区支公司"
