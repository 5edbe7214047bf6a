"""Areas by code or registered name (issue #18): given the areas the county registered, when a
household names its township (and village) by code, name or alias, then the policy records the
area code; a name that is no registered area is rejected ``unknown_area``, saying what was sent."""

from __future__ import annotations

from services.enrollment.decider import decide, evolve
from shared.events import registry
from shared.events.programme import AreaLevel, AreaRegistered
from tests.unit.builders import registration
from tests.unit.test_enrollment_rules import given, issued, rejected

COUNTY = AreaRegistered(code="mingxi", name="明溪县", level=AreaLevel.county)
CHENGGUAN = AreaRegistered(code="chengguan", name="城关", level=AreaLevel.township, parent_code="mingxi")
XUEFENG = AreaRegistered(code="xuefeng", name="雪峰", level=AreaLevel.township, parent_code="mingxi")
CHENGDONG = AreaRegistered(code="chengguan-01", name="城东村", level=AreaLevel.village, parent_code="chengguan")


def test_a_township_named_by_its_registered_name_or_its_code_is_recorded_as_the_code() -> None:
    state = given(COUNTY, CHENGGUAN, XUEFENG)
    by_name = issued(decide(registration(township="城关", household_id="H1", village=None), state))
    by_code = issued(decide(registration(township="chengguan", household_id="H2", village=None), state))
    assert (by_name.township, by_code.township) == ("chengguan", "chengguan")


def test_a_township_named_by_a_registered_alias_is_recorded_as_the_code() -> None:
    with_alias = CHENGGUAN.model_copy(update={"aliases": ["城关镇"]})
    outcome = issued(decide(registration(township="城关镇", village=None), given(COUNTY, with_alias)))
    assert outcome.township == "chengguan"


def test_a_township_name_that_is_not_registered_is_rejected_unknown_area_saying_what_was_sent() -> None:
    outcome = rejected(decide(registration(township="城关镇", village=None), given(COUNTY, CHENGGUAN)))
    assert outcome.reasons == ["unknown_area"]
    assert outcome.township == "城关镇"
    assert outcome.detail is not None and "城关镇" in outcome.detail


def test_the_policy_number_is_made_of_the_area_code_not_of_the_name_sent() -> None:
    outcome = issued(decide(registration(township="城关", village=None), given(COUNTY, CHENGGUAN)))
    assert outcome.policy_number == "P2024-chengguan-H1"


def test_a_household_whose_township_is_registered_only_after_it_arrives_is_rejected_unknown_area() -> None:
    state = given(COUNTY, XUEFENG)
    assert rejected(decide(registration(township="chengguan", village=None), state)).reasons == ["unknown_area"]
    evolve(state, CHENGGUAN)
    assert issued(decide(registration(township="chengguan", village=None), state)).township == "chengguan"


def test_a_county_or_village_code_is_no_township() -> None:
    state = given(COUNTY, CHENGGUAN, CHENGDONG)
    assert rejected(decide(registration(township="mingxi", village=None), state)).reasons == ["unknown_area"]
    assert rejected(decide(registration(township="chengguan-01", village=None), state)).reasons == ["unknown_area"]


def test_a_name_two_townships_go_by_is_rejected_unknown_area_asking_for_the_code() -> None:
    other = AreaRegistered(code="chengguan-2", name="城关", level=AreaLevel.township, parent_code="mingxi")
    outcome = rejected(decide(registration(township="城关", village=None), given(COUNTY, CHENGGUAN, other)))
    assert outcome.reasons == ["unknown_area"]
    assert outcome.detail is not None and "chengguan-2" in outcome.detail and "code" in outcome.detail


def test_an_area_registered_again_is_known_by_its_new_name_only() -> None:
    renamed = CHENGGUAN.model_copy(update={"name": "城关街道"})
    state = given(COUNTY, CHENGGUAN, renamed)
    assert issued(decide(registration(township="城关街道", village=None), state)).township == "chengguan"
    assert rejected(decide(registration(township="城关", household_id="H2", village=None), state)).reasons == ["unknown_area"]


def test_townships_are_taken_as_sent_until_the_county_registers_its_first_township() -> None:
    state = given(COUNTY)
    assert issued(decide(registration(township="chengguan", village=None), state)).township == "chengguan"
    evolve(state, XUEFENG)
    assert rejected(decide(registration(township="chengguan", household_id="H2", village=None), state)).reasons == ["unknown_area"]


def test_a_village_named_by_its_registered_name_or_code_is_recorded_as_the_code() -> None:
    state = given(COUNTY, CHENGGUAN, CHENGDONG)
    for household, sent in (("H1", "城东村"), ("H2", "chengguan-01")):
        outcome = issued(decide(registration(township="城关", household_id=household, village=sent), state))
        assert (outcome.township, outcome.village) == ("chengguan", "chengguan-01")


def test_a_village_not_registered_in_a_township_with_registered_villages_is_rejected_unknown_area() -> None:
    outcome = rejected(decide(registration(township="城关", village="城西村"), given(COUNTY, CHENGGUAN, CHENGDONG)))
    assert outcome.reasons == ["unknown_area"]
    assert outcome.detail is not None and "城西村" in outcome.detail


def test_a_village_of_another_township_is_no_village_of_this_one() -> None:
    xiaxi = AreaRegistered(code="xuefeng-01", name="溪东村", level=AreaLevel.village, parent_code="xuefeng")
    state = given(COUNTY, CHENGGUAN, XUEFENG, CHENGDONG, xiaxi)
    assert rejected(decide(registration(township="城关", village="溪东村"), state)).reasons == ["unknown_area"]


def test_villages_are_free_text_until_their_township_has_one_registered() -> None:
    state = given(COUNTY, CHENGGUAN)
    assert issued(decide(registration(township="城关", village="城西村"), state)).village == "城西村"
    evolve(state, CHENGDONG)
    assert rejected(decide(registration(township="城关", household_id="H2", village="城西村"), state)).reasons == ["unknown_area"]


def test_an_area_registered_before_aliases_existed_is_still_read() -> None:
    old = '{"code": "chengguan", "name": "城关", "level": "township", "parent_code": "mingxi"}'
    area = registry.parse_payload("AreaRegistered", 1, old)
    assert isinstance(area, AreaRegistered) and area.aliases == []


def test_a_long_name_several_long_codes_go_by_is_still_answered_unknown_area() -> None:
    sent = "城" * 80  # the longest name and codes a producer may send
    towns = [AreaRegistered(code=f"{n}" * 80, name=sent, level=AreaLevel.township, parent_code="mingxi") for n in range(3)]
    outcome = rejected(decide(registration(township=sent, village=None), given(COUNTY, *towns)))
    assert outcome.reasons == ["unknown_area"] and outcome.township == sent
