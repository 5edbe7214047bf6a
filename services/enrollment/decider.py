"""The enrolment rules, as pure functions (no I/O).

``decide(registration, state)`` returns the events a registration leads to: one ``PolicyIssued``
(with every member left out named and explained) or one ``HouseholdRejected``. ``state`` is what
enrollment knows of the programme year: which households and which persons are insured already.

Rules (DOMAIN.md, Mingxi 2020 plan section 三):
- the township (and village) may be named by area code, registered name or alias; the policy
  records the code; one that names no registered area is rejected ``unknown_area``;
- the unit of cover is the household; a household is insured once per programme year;
- each member needs a valid resident ID number whose birth date matches the stated one;
- ages 28 days to 65 years (周岁) on the first day of cover, renewals to 70;
- a person is insured once per programme year (a member already insured is left out);
- the year's product terms (``ProductTermsPublished``; without them the 100-yuan version,
  ``DEFAULT_TERMS``): 100 yuan per unit buys 200,000 yuan of death/disability cover split equally
  among the insured members (leftover fen to the first members in the order listed) and a
  14,000-yuan medical limit shared by the household for the policy year; the policy carries the
  terms in force when it is issued (later terms apply to later policies only);
- cover runs from 00:00 the day after issue to 24:00 on the end date one year on (CST).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from shared.domain.areas import Area, Areas, Unresolved
from shared.domain.calendar import CoverPeriod, age_refusal, cover_period
from shared.domain.identity import ResidentIdError, resident_id_birth_date
from shared.domain.money import split_equally
from shared.events.enrollment import (
    ExcludedMember,
    HouseholdRegistered,
    HouseholdRejected,
    PolicyIssued,
)
from shared.events.programme import AreaRegistered, ProductTermsPublished


@dataclass(frozen=True)
class Terms:
    """The product terms a policy is issued under (amounts per unit)."""

    premium_per_unit_fen: int
    death_disability_per_unit_fen: int
    medical_limit_per_unit_fen: int
    deductible_fen: int | None  # None: not on the policy; the insurer states it on each medical claim
    payment_ratio: Decimal | None

    @classmethod
    def published(cls, event: ProductTermsPublished) -> Terms:
        return cls(event.premium_per_unit_fen, event.death_disability_per_unit_fen, event.medical_limit_per_unit_fen,
                   event.deductible_fen, event.payment_ratio)


# A year without ProductTermsPublished: the Mingxi 100-yuan version (100元版), as every policy was
# issued before terms could be published, with no deductible or ratio on the policy.
DEFAULT_TERMS = Terms(premium_per_unit_fen=100_00, death_disability_per_unit_fen=200_000_00,
                      medical_limit_per_unit_fen=14_000_00, deductible_fen=None, payment_ratio=None)


@dataclass
class EnrollmentState:
    """What enrollment knows when it decides: households and persons insured, per year."""

    insured_households: set[tuple[int, str]] = field(default_factory=set)  # (year, household_id)
    insured_persons: dict[tuple[int, str], str] = field(default_factory=dict)  # (year, id number) -> policy
    policy_numbers: set[str] = field(default_factory=set)  # numbers already issued (of those a batch needs)
    terms: dict[int, Terms] = field(default_factory=dict)  # year -> the latest published terms
    areas: Areas = field(default_factory=Areas)  # the registered townships and villages (all years)


# "subsidy-" + a policy number must stay a stream id (200 characters at most).
POLICY_NUMBER_MAX = 180


def policy_number(registration: HouseholdRegistered) -> str:
    """Policy numbers are derived from the registration so that a replay issues the same one:
    ``P{year}-{township}-{household}``, with ``%`` in the township written ``%25`` and ``-``
    written ``%2D``. The year is four digits and the township then holds no separator, so the
    household is everything after the second one, dashes and all: no two registrations share a
    number (township ``A-B`` with household ``C`` is ``P2024-A%2DB-C``, township ``A`` with
    household ``B-C`` is ``P2024-A-B-C``), and the usual numbers read as they always did. A number
    longer than ``POLICY_NUMBER_MAX`` becomes ``P{year}-`` and a digest of it (one separator where
    a readable number has two: the forms never meet). Numbers already issued keep their form."""
    township = registration.township.replace("%", "%25").replace("-", "%2D")
    number = f"P{registration.programme_year}-{township}-{registration.household_id}"
    if len(number) <= POLICY_NUMBER_MAX:
        return number
    return f"P{registration.programme_year}-{hashlib.sha256(number.encode()).hexdigest()[:32].upper()}"


def resolved(reg: HouseholdRegistered, areas: Areas) -> HouseholdRegistered | Unresolved:
    """The registration with its township and village as area codes (each may be sent as a code, a
    registered name or an alias: shared/domain/areas.py), or what it names that is not registered."""
    township = areas.township(reg.township)
    if isinstance(township, Unresolved):
        return township
    village = reg.village if reg.village is None else areas.village(township, reg.village)
    if isinstance(village, Unresolved):
        return village
    if (township, village) == (reg.township, reg.village):
        return reg
    return reg.model_copy(update={"township": township, "village": village})


def decide(reg: HouseholdRegistered, state: EnrollmentState) -> PolicyIssued | HouseholdRejected:
    where = resolved(reg, state.areas)
    if isinstance(where, Unresolved):
        return _rejected(reg, ["unknown_area"], [], detail=where.detail)
    reg = where  # from here on, the township and village are area codes
    year = reg.programme_year
    if (year, reg.household_id) in state.insured_households:
        return _rejected(reg, ["household_already_insured"], [])
    issued_as = policy_number(reg)
    if issued_as in state.policy_numbers:  # issued before in another form (see ``policy_number``): never twice
        return _rejected(reg, ["policy_number_taken"], [])
    try:
        period = _cover(reg.paid_on)
    except (ValueError, OverflowError):  # paid in the year 9999: its year of cover ends past the calendar
        return _rejected(reg, ["paid_on_out_of_range"], [])
    eligible, excluded = [], []
    seen: set[str] = set()
    for member in reg.members:
        number = member.resident_id.upper()
        reason = _member_refusal(member.resident_id, member.birth_date, period.first_day, reg.renewal)
        if reason is None and number in seen:
            reason = "duplicate_member"
        if reason is None and (year, number) in state.insured_persons:
            reason = "already_insured"
        if reason is None:
            eligible.append(member)
            seen.add(number)
        else:
            excluded.append(ExcludedMember(resident_id=number, reason=reason))

    if not eligible:
        return _rejected(reg, ["no_eligible_member"], excluded)

    terms = state.terms.get(year, DEFAULT_TERMS)
    shares = split_equally(terms.death_disability_per_unit_fen * reg.units, len(eligible))
    # As mappings, validated into InsuredPerson models by PolicyIssued's own validation, in one
    # call into pydantic-core (1.7 µs a household less than a model built for each here).
    insured = [
        {"resident_id": m.resident_id.upper(), "name": m.name, "relation": m.relation, "birth_date": m.birth_date,
         "death_disability_sum_fen": share}
        for m, share in zip(eligible, shares, strict=True)
    ]
    return PolicyIssued(
        policy_number=issued_as,
        household_id=reg.household_id,
        programme_year=year,
        township=reg.township,
        village=reg.village,
        category=reg.category,
        payer=reg.payer,
        units=reg.units,
        premium_fen=terms.premium_per_unit_fen * reg.units,
        issued_on=reg.paid_on,
        cover_start=period.start,
        cover_end=period.end,
        insured=insured,  # type: ignore[arg-type]
        excluded=excluded,
        medical_limit_fen=terms.medical_limit_per_unit_fen * reg.units,
        renewal=reg.renewal,
        deductible_fen=terms.deductible_fen,
        payment_ratio=terms.payment_ratio,
    )


@functools.lru_cache(maxsize=4096)
def _cover(paid_on: date) -> CoverPeriod:
    """``cover_period`` of a payment date: a batch's registrations share a few payment dates, so
    each is worked out once (a date that fails is not kept, and fails again the same way)."""
    return cover_period(paid_on)


def _member_refusal(resident_id: str, stated_birth, first_day, renewal: bool) -> str | None:  # type: ignore[no-untyped-def]
    try:
        birth = resident_id_birth_date(resident_id)
    except ResidentIdError as exc:
        return exc.code
    if birth != stated_birth:
        return "birth_date_mismatch"
    return age_refusal(stated_birth, first_day, renewal)


def _rejected(reg: HouseholdRegistered, reasons: list[str], excluded: list[ExcludedMember],
              detail: str | None = None) -> HouseholdRejected:
    return HouseholdRejected(
        household_id=reg.household_id, programme_year=reg.programme_year, township=reg.township, payer=reg.payer,
        reasons=reasons, excluded=excluded, detail=detail,
    )


def area_of(event: AreaRegistered) -> Area:
    return Area(event.code, event.name, event.level.value, event.parent_code, tuple(event.aliases))


def evolve(state: EnrollmentState,
           event: PolicyIssued | HouseholdRejected | ProductTermsPublished | AreaRegistered) -> EnrollmentState:
    """Fold an outcome or a year's terms into the state (rejections change nothing). Updates
    ``state`` in place and returns it: the state is the service's working copy, not shared."""
    if isinstance(event, ProductTermsPublished):
        state.terms[event.programme_year] = Terms.published(event)
    if isinstance(event, AreaRegistered):
        state.areas.register(area_of(event))
    if isinstance(event, PolicyIssued):
        state.insured_households.add((event.programme_year, event.household_id))
        state.policy_numbers.add(event.policy_number)
        for person in event.insured:
            state.insured_persons[(event.programme_year, person.resident_id)] = event.policy_number
    return state
