"""The enrolment rules, as pure functions (no I/O).

``decide(registration, state)`` returns the events a registration leads to: one ``PolicyIssued``
(with every member left out named and explained) or one ``HouseholdRejected``. ``state`` is what
enrollment knows of the programme year: which households and which persons are insured already.

Rules (DOMAIN.md, Mingxi 2020 plan section 三):
- the township (and village) may be named by area code, registered name or alias; the policy
  records the code; one that names no registered area is rejected ``unknown_area``;
- a county's scoped credential (``county`` = its area code, from the subject it was sent on) names
  townships of its own county only: they are resolved among the areas registered under that code
  (the tree of ``parent_code``), and one that lies elsewhere, or that the county has not
  registered, is rejected ``area_not_permitted`` with the sender in ``detail``; so is a correction
  or cancellation of a policy whose township is not the county's;
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
import uuid
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from datetime import date, datetime
from decimal import Decimal

from shared.domain.areas import Area, Areas, Unresolved
from shared.domain.calendar import CoverPeriod, age_refusal, cover_period
from shared.domain.identity import ResidentIdError, resident_id_birth_date
from shared.domain.money import split_equally
from shared.events.enrollment import (
    CorrectionRefused,
    ExcludedMember,
    HouseholdCorrected,
    HouseholdRegistered,
    HouseholdRejected,
    IdCorrection,
    InsuredPerson,
    Member,
    PolicyAmended,
    PolicyCancellationRequested,
    PolicyCancelled,
    PolicyFigures,
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
    within: dict[str, Areas] = field(default_factory=dict)  # county code -> its registered areas (a cache)

    def areas_of(self, county: str) -> Areas:
        """The areas registered under ``county`` (at any depth), ``county`` itself included."""
        if county not in self.within:
            self.within[county] = Areas.of(a for a in self.areas.by_code.values() if under(self.areas, a.code, county))
        return self.within[county]


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


DETAIL_MAX = HouseholdRejected.model_fields["detail"].metadata[0].max_length  # a long name sent is cut, not refused


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


def under(areas: Areas, code: str, ancestor: str) -> bool:
    """Whether the registered area ``code`` is ``ancestor`` or lies under it (by ``parent_code``)."""
    seen: set[str] = set()
    while code not in seen:
        if code == ancestor:
            return True
        seen.add(code)
        area = areas.by_code.get(code)
        if area is None or area.parent_code is None:
            return False
        code = area.parent_code
    return False  # a cycle in what was registered: under nothing


@dataclass(frozen=True)
class NotPermitted:
    """A registration that names an area outside the sender's county."""

    detail: str


def resolved_for(reg: HouseholdRegistered, state: EnrollmentState,
                 county: str | None) -> HouseholdRegistered | Unresolved | NotPermitted:
    """``resolved`` for its sender: unscoped (``county`` None) among all areas; a county's scoped
    credential among the areas registered under its county, and a township it has not registered
    is not its own (an unregistered township cannot be placed in any county)."""
    if county is None:
        return resolved(reg, state.areas)
    own = state.areas_of(county)
    where = resolved(reg, own)
    if isinstance(where, HouseholdRegistered) and where.township in own.by_code:
        return where
    elsewhere = resolved(reg, state.areas)
    if isinstance(elsewhere, Unresolved):
        return elsewhere  # names no registered area of any county: unknown_area, as for anyone
    if isinstance(where, Unresolved) and elsewhere.township not in state.areas.by_code:
        return where
    return NotPermitted(f"发送方 county-{county} 无权登记乡镇“{reg.township}”的家庭（{_placed(state.areas, elsewhere)}）/ "
                        f"producer county-{county} may not register households of township {reg.township!r} "
                        f"({_placed(state.areas, elsewhere, en=True)})")


def _placed(areas: Areas, where: HouseholdRegistered | Unresolved, en: bool = False) -> str:
    if not isinstance(where, HouseholdRegistered) or where.township not in areas.by_code:
        return "not registered under its county" if en else "未在本县登记"
    chain, code, seen = [], where.township, set()
    while code is not None and code in areas.by_code and code not in seen:
        seen.add(code)
        chain.append(code)
        code = areas.by_code[code].parent_code
    return ("under " if en else "属于 ") + " < ".join(chain[1:] or chain)


def decide(reg: HouseholdRegistered, state: EnrollmentState, county: str | None = None) -> PolicyIssued | HouseholdRejected:
    """``county``: the area code of the scoped credential that sent it (None: the unscoped one)."""
    where = resolved_for(reg, state, county)
    if isinstance(where, NotPermitted):
        return _rejected(reg, ["area_not_permitted"], [], detail=where.detail[:DETAIL_MAX])
    if isinstance(where, Unresolved):
        return _rejected(reg, ["unknown_area"], [], detail=where.detail[:DETAIL_MAX])
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
        renews = reg.renewal and (year - 1, number) in state.insured_persons  # a renewal is checked, not trusted
        reason = _member_refusal(member.resident_id, member.birth_date, period.first_day, renews)
        if reason == "too_old" and reg.renewal:
            reason = _renewal_refusal(member, period.first_day)
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


def _renewal_refusal(member: Member, first_day: date) -> str:
    """A member claimed as renewing, not insured in the previous programme year and too old as a
    new entrant: ``renewal_not_found`` when a renewal would have admitted them."""
    return "too_old" if age_refusal(member.birth_date, first_day, True) else "renewal_not_found"


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
        state.within.clear()
    if isinstance(event, PolicyAmended | PolicyCancelled):  # its persons so far are free again
        _release(state, event.programme_year, event.policy_number)
    if isinstance(event, PolicyIssued):
        state.insured_households.add((event.programme_year, event.household_id))
        state.policy_numbers.add(event.policy_number)
        for person in event.insured:
            state.insured_persons[(event.programme_year, person.resident_id)] = event.policy_number
    return state


# --- corrections: HouseholdCorrected and PolicyCancellationRequested -------------------------------
#
# A county corrects a registration by sending it again as it should have been, naming the event it
# replaces; the policy keeps its number and is amended (``PolicyAmended``: the policy as it now
# stands, and what it counted before, so reports move it), or nothing changes (``CorrectionRefused``).
# - the named event must be a registration or correction of this household and year, and the one
#   the policy in force came from (else ``correction_target_unknown`` / ``correction_superseded``);
# - the corrected registration is judged by the registration rules, its own persons not counting
#   as insured elsewhere; a correction that would insure nobody is refused with those reasons;
# - before cover starts (the correction's ``occurred_at`` before ``cover_start``) anything may
#   change: the policy is re-issued under the same number;
# - once cover has started only names, ID numbers (with their birth dates), township and village
#   may change (else ``cover_started``): each insured person keeps their share, and ``renamed``
#   pairs each corrected ID number with the one it replaces;
# - a policy is cancelled only before its cover starts (``PolicyCancelled``).


@dataclass
class HouseholdFile:
    """What enrollment's own stream of one household and programme year says: the registrations
    and corrections recorded (by recorded event id), the policy in force as it now stands (a
    ``PolicyAmended`` is one; None: no policy, or cancelled), the registration or correction it came
    from, and when it was first issued."""

    registrations: set[uuid.UUID] = field(default_factory=set)
    policy: PolicyIssued | None = None
    in_force: uuid.UUID | None = None
    issued_at: datetime | None = None

    def record(self, event_id: uuid.UUID, causation_id: uuid.UUID | None, occurred_at: datetime, payload: object) -> None:
        """Fold one event of the household's stream (in stream order)."""
        if isinstance(payload, HouseholdRegistered):  # a correction is one too
            self.registrations.add(event_id)
        elif isinstance(payload, PolicyIssued):
            if not isinstance(payload, PolicyAmended):
                self.issued_at = occurred_at
            self.policy, self.in_force = payload, causation_id
        elif isinstance(payload, PolicyCancelled):
            self.policy, self.in_force = None, None


def decide_correction(correction: HouseholdCorrected, named: uuid.UUID | None, file: HouseholdFile,
                      state: EnrollmentState, at: datetime, county: str | None = None) -> PolicyAmended | CorrectionRefused:
    """``named``: the recorded id of the event the correction names (None: it names nothing
    recorded); ``at``: when the correction happened; ``county``: the sender's scope (``decide``)."""
    if county is not None and file.policy is not None and not under(state.areas, file.policy.township, county):
        return _refused(correction, reasons=["area_not_permitted"])  # another county's policy
    if named is None or named not in file.registrations:
        return _refused(correction, reasons=["correction_target_unknown"])
    old = file.policy
    if old is None:
        return _refused(correction, reasons=["no_policy_in_force"])
    if named != file.in_force:
        return _refused(correction, reasons=["correction_superseded"])
    # Judged as a registration, with this policy's household, number and persons free.
    others = {key: number for key, number in state.insured_persons.items() if number != old.policy_number}
    judged = decide(correction, dataclass_replace(state, insured_households=set(), policy_numbers=set(),
                                                  insured_persons=others), county)
    if isinstance(judged, HouseholdRejected):
        return _refused(correction, reasons=judged.reasons, excluded=judged.excluded)
    fields = {name: getattr(judged, name) for name in PolicyIssued.model_fields}
    renamed: list[IdCorrection] = []
    if at >= old.cover_start:
        kept = _same_persons(old, judged)
        if kept is None or (judged.cover_start, judged.payer, judged.category, judged.units) != (
                old.cover_start, old.payer, old.category, old.units):
            return _refused(correction, reasons=["cover_started"])
        insured, renamed = kept
        fields = {name: getattr(old, name) for name in PolicyIssued.model_fields}
        fields.update(township=judged.township, village=judged.village, insured=insured, excluded=judged.excluded)
    fields["policy_number"] = old.policy_number
    return PolicyAmended(**fields, previous=_figures(file), renamed=renamed)


def decide_cancellation(request: PolicyCancellationRequested, file: HouseholdFile, at: datetime,
                        county: str | None = None, areas: Areas | None = None) -> PolicyCancelled | CorrectionRefused:
    """``county``: the sender's scope, checked against the policy's township in ``areas``."""
    old = file.policy
    if county is not None and old is not None and not under(areas or Areas(), old.township, county):
        return _refused(request, reasons=["area_not_permitted"])  # another county's policy
    if old is None:
        return _refused(request, reasons=["no_policy_in_force"])
    if at >= old.cover_start:
        return _refused(request, reasons=["cover_started"])
    return PolicyCancelled(policy_number=old.policy_number, household_id=old.household_id,
                           programme_year=old.programme_year, reason=request.reason, previous=_figures(file))


def _same_persons(old: PolicyIssued, new: PolicyIssued) -> tuple[list[InsuredPerson], list[IdCorrection]] | None:
    """The new insured list with each person's share kept, and the ID numbers corrected; None when
    the correction insures other persons (another number of them, another relation, or a person
    whose name and ID number both changed: a typo is fixed in one of them, and both changed after
    cover starts would put someone else in the insured's place). A person keeps their ID number
    where it is on both lists; the others are paired in the order listed."""
    if len(old.insured) != len(new.insured):
        return None
    before = {p.resident_id: p for p in old.insured}
    kept_numbers = {p.resident_id for p in new.insured}
    replaced = iter([p for p in old.insured if p.resident_id not in kept_numbers])
    insured, renamed = [], []
    for person in new.insured:
        was = before.get(person.resident_id) or next(replaced)
        if was.relation != person.relation or (was.resident_id != person.resident_id and was.name != person.name):
            return None
        if was.resident_id != person.resident_id:
            renamed.append(IdCorrection(was=was.resident_id, now=person.resident_id))
        insured.append(was.model_copy(update={"resident_id": person.resident_id, "name": person.name,
                                              "birth_date": person.birth_date}))
    return insured, renamed


def _figures(file: HouseholdFile) -> PolicyFigures:
    old = file.policy
    assert old is not None and file.issued_at is not None  # a policy in force was issued
    return PolicyFigures(township=old.township, payer=old.payer, insured_persons=len(old.insured),
                         premium_fen=old.premium_fen, medical_limit_fen=old.medical_limit_fen, issued_at=file.issued_at)


def _refused(about: HouseholdRegistered | PolicyCancellationRequested, *, reasons: list[str],
             excluded: list[ExcludedMember] | None = None) -> CorrectionRefused:
    return CorrectionRefused(household_id=about.household_id, programme_year=about.programme_year,
                             reasons=reasons, excluded=excluded or [])  # type: ignore[arg-type]


def _release(state: EnrollmentState, year: int, number: str) -> None:
    for key in [key for key, held_by in state.insured_persons.items() if held_by == number and key[0] == year]:
        del state.insured_persons[key]
