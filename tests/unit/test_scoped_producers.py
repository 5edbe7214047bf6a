"""Each county sees only its own (issue #21), the rules: given the areas of two counties, when a
county's scoped credential (the subject ``guanhuai.in.county.<code>.<Type>``) registers, corrects
or cancels a household, then only its own townships are taken; another county's township is
rejected ``area_not_permitted``, the sender named in the rejection."""

from __future__ import annotations

import uuid

import pytest

from services.enrollment.decider import HouseholdFile, decide, decide_cancellation, decide_correction, evolve
from shared.events.enrollment import HouseholdCorrected, PolicyCancellationRequested
from shared.events.producers import recorded_id
from shared.events.programme import AreaLevel, AreaRegistered
from shared.events.subjects import (
    inbound_producer,
    producer_area,
    producer_sends,
    scoped_inbound_subject,
    split_inbound,
)
from tests.unit.builders import registration
from tests.unit.test_corrections import AFTER_START, BEFORE_COVER, ISSUED_AT, REGISTERED
from tests.unit.test_enrollment_rules import given, issued, rejected

MINGXI = AreaRegistered(code="350421", name="明溪县", level=AreaLevel.county)
HONGTA = AreaRegistered(code="530402", name="红塔区", level=AreaLevel.county)
# Both counties have a 城关: a scoped credential's name means its own.
MX_CHENGGUAN = AreaRegistered(code="350421100", name="城关", level=AreaLevel.township, parent_code="350421")
MX_VILLAGE = AreaRegistered(code="350421100001", name="城东村", level=AreaLevel.village, parent_code="350421100")
HT_CHENGGUAN = AreaRegistered(code="530402001", name="城关", level=AreaLevel.township, parent_code="530402")
HT_YUXI = AreaRegistered(code="530402002", name="玉溪", level=AreaLevel.township, parent_code="530402")
AREAS = (MINGXI, HONGTA, MX_CHENGGUAN, MX_VILLAGE, HT_CHENGGUAN, HT_YUXI)


def test_a_scoped_subject_names_its_county_and_the_unscoped_one_none() -> None:
    subject = scoped_inbound_subject("county", "350421", "HouseholdRegistered")
    assert subject == "guanhuai.in.county.350421.HouseholdRegistered"
    assert split_inbound(subject) == ("county", "HouseholdRegistered")
    assert inbound_producer(subject) == "county.350421" and producer_area("county.350421") == "350421"
    assert inbound_producer("guanhuai.in.county.HouseholdRegistered") == "county"
    assert producer_area("county") is None
    assert split_inbound("guanhuai.in.insurer.350421.ClaimReported") is None  # insurers are not scoped
    with pytest.raises(ValueError):
        scoped_inbound_subject("county", "35.0421", "HouseholdRegistered")  # no token of a subject


def test_a_scoped_county_sends_households_only() -> None:
    assert producer_sends("county.350421", "HouseholdRegistered")
    assert producer_sends("county.350421", "PolicyCancellationRequested")
    # Areas, targets, terms and plans reach every county: the unscoped credential's.
    assert not producer_sends("county.350421", "AreaRegistered")
    assert not producer_sends("county.350421", "ProductTermsPublished")
    assert producer_sends("county", "AreaRegistered")


def test_two_counties_sending_the_same_event_id_are_recorded_under_two_ids() -> None:
    sent = uuid.uuid4()
    assert len({recorded_id("county", sent), recorded_id("county.350421", sent), recorded_id("county.530402", sent)}) == 3


def test_a_county_registers_households_of_its_own_townships_by_name_or_code() -> None:
    state = given(*AREAS)
    by_name = issued(decide(registration(township="城关", village="城东村", household_id="H1"), state, "350421"))
    assert (by_name.township, by_name.village) == ("350421100", "350421100001")  # its own 城关, not Hongta's
    by_code = issued(decide(registration(township="530402002", village=None, household_id="H2"), state, "530402"))
    assert by_code.township == "530402002"


def test_another_countys_township_is_rejected_area_not_permitted_naming_the_sender() -> None:
    state = given(*AREAS)
    outcome = rejected(decide(registration(township="530402002", village=None), state, "350421"))
    assert outcome.reasons == ["area_not_permitted"]
    assert outcome.detail is not None and "county-350421" in outcome.detail and "530402" in outcome.detail
    by_name = rejected(decide(registration(township="玉溪", village=None), state, "350421"))  # Hongta's, by name
    assert by_name.reasons == ["area_not_permitted"]


def test_the_unscoped_credential_registers_any_township_as_before() -> None:
    state = given(*AREAS)
    assert issued(decide(registration(township="530402002", village=None), state)).township == "530402002"


def test_a_township_registered_nowhere_is_unknown_and_one_no_county_holds_is_not_permitted() -> None:
    state = given(*AREAS)
    assert rejected(decide(registration(township="不存在", village=None), state, "350421")).reasons == ["unknown_area"]
    # Before a county registered any township, a township is taken as sent (unscoped); a scoped
    # credential cannot place it under its county, so it is not taken.
    bare = given(AreaRegistered(code="350402", name="三元区", level=AreaLevel.county))
    assert issued(decide(registration(township="somewhere", village=None), bare)).township == "somewhere"
    assert rejected(decide(registration(township="somewhere", village=None), bare, "350402")).reasons == ["area_not_permitted"]


def test_an_area_registered_later_under_the_county_is_its_own_from_then_on() -> None:
    state = given(MINGXI, HONGTA, HT_CHENGGUAN)
    assert rejected(decide(registration(township="350421100", village=None), state, "350421")).reasons == ["unknown_area"]
    evolve(state, MX_CHENGGUAN)
    assert issued(decide(registration(township="350421100", village=None), state, "350421")).township == "350421100"


def hongta_policy_file():  # type: ignore[no-untyped-def]
    state = given(*AREAS)
    reg = registration(township="530402002", village=None)
    policy = issued(decide(reg, state, "530402"))
    file = HouseholdFile()
    file.record(REGISTERED, None, ISSUED_AT, reg)
    file.record(uuid.uuid4(), REGISTERED, ISSUED_AT, policy)
    return state, file, reg


def test_a_county_may_not_correct_or_cancel_another_countys_policy() -> None:
    state, file, reg = hongta_policy_file()
    # Moving Hongta's household to Mingxi's township: the policy is not Mingxi's to correct.
    moved = HouseholdCorrected(**reg.model_dump() | {"township": "350421100"}, corrects=uuid.uuid4())
    outcome = decide_correction(moved, REGISTERED, file, state, AFTER_START, "350421")
    assert list(outcome.reasons) == ["area_not_permitted"]  # type: ignore[union-attr]
    cancel = PolicyCancellationRequested(household_id=reg.household_id, programme_year=reg.programme_year,
                                         reason="registered_in_error")
    refused = decide_cancellation(cancel, file, BEFORE_COVER, "350421", state.areas)
    assert list(refused.reasons) == ["area_not_permitted"]  # type: ignore[union-attr]
    # Its own county may.
    assert type(decide_cancellation(cancel, file, BEFORE_COVER, "530402", state.areas)).__name__ == "PolicyCancelled"
    renamed = HouseholdCorrected(**reg.model_dump() | {"township": "530402001"}, corrects=uuid.uuid4())
    assert type(decide_correction(renamed, REGISTERED, file, state, AFTER_START, "530402")).__name__ == "PolicyAmended"
