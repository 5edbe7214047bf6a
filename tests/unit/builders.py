"""Builders of realistic domain events for the given/when/then tests of the deciders.

Pure: they only build pydantic models. Defaults describe one ordinary case (a Mingxi household of
three, issued on 1 March 2024, cover 2 March 2024 to 1 March 2025); a test names only what it is
about and leaves the rest to the defaults.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from decimal import Decimal

from shared.domain.calendar import cover_period
from shared.domain.identity import check_character, make_resident_id
from shared.domain.money import split_equally
from shared.events.claims import ClaimKind, ClaimPaid, ClaimReported, CoverEnded
from shared.events.enrollment import (
    HouseholdCategory,
    HouseholdRegistered,
    InsuredPerson,
    Member,
    Payer,
    PolicyIssued,
    Relation,
)
from shared.events.subsidy import SubsidyApproved, SubsidyLine, SubsidyPlanPublished

MINGXI = "350421"  # 明溪县, Sanming, Fujian
TOWNSHIP = "chengguan"
YEAR = 2024
ISSUED_ON = date(2024, 3, 1)  # agreed, paid and issued
FIRST_DAY = date(2024, 3, 2)  # first day of cover (00:00 CST)
LAST_DAY = date(2025, 3, 1)  # last day of cover (to 24:00 CST)

HEAD_BIRTH = date(1980, 5, 1)
SPOUSE_BIRTH = date(1982, 8, 15)
CHILD_BIRTH = date(2010, 2, 3)

PER_UNIT_SUM_FEN = 200_000_00
PER_UNIT_MEDICAL_FEN = 14_000_00
PER_UNIT_PREMIUM_FEN = 100_00


# --- resident ID numbers ------------------------------------------------------------------------


def resident_id(birth: date = HEAD_BIRTH, sequence: int = 11) -> str:
    """A valid ID number (Mingxi region code) for this birth date."""
    return make_resident_id(MINGXI, birth, sequence)


def nth_resident_id(n: int) -> str:
    """The n-th of a run of distinct valid ID numbers (1,000 per birth date from 1 January 1970)."""
    return resident_id(date(1970, 1, 1) + timedelta(days=n // 1000), n % 1000)


def resident_id_ending_in_x(birth: date = HEAD_BIRTH) -> str:
    """A valid ID number for this birth date whose check character is X."""
    for sequence in range(1000):
        number = resident_id(birth, sequence)
        if number.endswith("X"):
            return number
    raise AssertionError("no sequence gives the check character X")  # pragma: no cover


def with_wrong_check_character(number: str) -> str:
    """The same number with a check character that does not match its first 17 digits."""
    wrong = "0" if number[17] != "0" else "1"
    return number[:17] + wrong


def with_impossible_birth_date(region: str = MINGXI) -> str:
    """A well-formed ID number (right check character) whose birth date, 30 February 1980, is no date."""
    first17 = f"{region}19800230011"
    return first17 + check_character(first17)


# --- enrolment ----------------------------------------------------------------------------------


def member(birth: date = HEAD_BIRTH, sequence: int = 11, *, relation: Relation = Relation.head,
           number: str | None = None, stated_birth: date | None = None, name: str = "王建国") -> Member:
    """A household member; ``number`` overrides the ID number, ``stated_birth`` the birth date on the form."""
    return Member(name=name, resident_id=number or resident_id(birth, sequence), relation=relation,
                  birth_date=stated_birth or birth)


def spouse(birth: date = SPOUSE_BIRTH, sequence: int = 22, **kwargs) -> Member:  # type: ignore[no-untyped-def]
    return member(birth, sequence, relation=Relation.spouse, name="李秀英", **kwargs)


def child(birth: date = CHILD_BIRTH, sequence: int = 31, **kwargs) -> Member:  # type: ignore[no-untyped-def]
    return member(birth, sequence, relation=Relation.child, name="王小明", **kwargs)


def family() -> list[Member]:
    """Head, spouse and child, in that order."""
    return [member(), spouse(), child()]


def registration(*members: Member, household_id: str = "H1", year: int = YEAR, township: str = TOWNSHIP,
                 village: str | None = "chengguan-01", category: HouseholdCategory = HouseholdCategory.poor,
                 payer: Payer = Payer.government, units: int = 1, paid_on: date = ISSUED_ON,
                 renewal: bool = False) -> HouseholdRegistered:
    """A household registered and paid for; with no members given, the family of three."""
    return HouseholdRegistered(
        household_id=household_id, programme_year=year, township=township, village=village, category=category,
        payer=payer, units=units, members=list(members) or family(), paid_on=paid_on, renewal=renewal,
    )


def issued_on_for_first_day(first_day: date) -> date:
    """The issue (and payment) day whose cover starts on ``first_day``."""
    return first_day - timedelta(days=1)


# --- policies (as enrolment records them) -------------------------------------------------------


def insured(number: str, share_fen: int, relation: Relation = Relation.head,
            birth: date | None = None) -> InsuredPerson:
    return InsuredPerson(resident_id=number, name="被保险人", relation=relation,
                         birth_date=birth or date(int(number[6:10]), int(number[10:12]), int(number[12:14])),
                         death_disability_sum_fen=share_fen)


def policy(*numbers: str, policy_number: str | None = None, household_id: str = "H1", year: int = YEAR,
           township: str = TOWNSHIP, category: HouseholdCategory = HouseholdCategory.poor, units: int = 1,
           issued_on: date = ISSUED_ON, shares: Sequence[int] | None = None) -> PolicyIssued:
    """A policy insuring these ID numbers (default: the family of three) with equal shares in the
    order given, unless ``shares`` says otherwise."""
    numbers = numbers or tuple(m.resident_id for m in family())
    shares = list(shares) if shares is not None else split_equally(PER_UNIT_SUM_FEN * units, len(numbers))
    period = cover_period(issued_on)
    return PolicyIssued(
        policy_number=policy_number or f"P{year}-{township}-{household_id}", household_id=household_id,
        programme_year=year, township=township, category=category, payer=Payer.government, units=units,
        premium_fen=PER_UNIT_PREMIUM_FEN * units, issued_on=issued_on, cover_start=period.start,
        cover_end=period.end, insured=[insured(n, s) for n, s in zip(numbers, shares, strict=True)],
        medical_limit_fen=PER_UNIT_MEDICAL_FEN * units,
    )


def policies_of(persons: int, per_policy: int, *, first: int = 0, category: HouseholdCategory = HouseholdCategory.poor,
                year: int = YEAR, prefix: str = "H") -> list[PolicyIssued]:
    """Enough policies of ``per_policy`` distinct persons each to insure ``persons`` people
    (the last one may be smaller); persons are numbered from ``first``."""
    out = []
    for start in range(0, persons, per_policy):
        numbers = [nth_resident_id(first + i) for i in range(start, min(start + per_policy, persons))]
        out.append(policy(*numbers, household_id=f"{prefix}{first + start}", category=category, year=year))
    return out


# --- subsidy ------------------------------------------------------------------------------------

PRIORITY = [HouseholdCategory.two_daughters_sterilised, HouseholdCategory.single_daughter_certified,
            HouseholdCategory.special_family, HouseholdCategory.poor, HouseholdCategory.poverty_relief]
SPECIAL = [HouseholdCategory.lost_only_child, HouseholdCategory.only_child_disabled]


def line(code: str = "priority", categories: Iterable[HouseholdCategory] = PRIORITY, *, rate_fen: int = 40_00,
         head_cap: int = 3_200, budget_fen: int | None = None, label: str = "计生家庭") -> SubsidyLine:
    """A plan line; the budget is rate x head count unless given."""
    return SubsidyLine(code=code, label=label, categories=list(categories), rate_fen=rate_fen, head_cap=head_cap,
                       budget_fen=rate_fen * head_cap if budget_fen is None else budget_fen)


def hongta_lines(priority_cap: int = 3_200, special_cap: int = 444) -> list[SubsidyLine]:
    """Hongta 2024: 40 yuan/person for 3,200 persons, 50 yuan/person for 444 (失独 282, 独生子女伤残 162)."""
    return [line("priority", PRIORITY, rate_fen=40_00, head_cap=priority_cap),
            line("special", SPECIAL, rate_fen=50_00, head_cap=special_cap, label="失独家庭、独生子女伤残家庭")]


def plan(*lines: SubsidyLine, plan_id: str = "HT-2024", year: int = YEAR,
         insurer: str = "中国人寿保险股份有限公司玉溪市红塔区支公司") -> SubsidyPlanPublished:
    return SubsidyPlanPublished(plan_id=plan_id, programme_year=year, insurer=insurer,
                                lines=list(lines) or hongta_lines())


def approved(policy_: PolicyIssued, number: str, *, line_code: str = "priority", amount_fen: int = 40_00,
             plan_id: str = "HT-2024") -> SubsidyApproved:
    """A subsidy already approved for this person of this policy."""
    return SubsidyApproved(plan_id=plan_id, programme_year=policy_.programme_year, line=line_code,
                           policy_number=policy_.policy_number, township=policy_.township, resident_id=number,
                           amount_fen=amount_fen)


# --- claims -------------------------------------------------------------------------------------

ACCIDENT = date(2024, 6, 10)


def claim(number: str, kind: ClaimKind, *, claim_id: str = "C1", policy_number: str = "P2024-chengguan-H1",
          accident: date = ACCIDENT, reported: date | None = None, outcome: date | None = None,
          grade: int | None = None, expenses_fen: int | None = None, social_insurance_fen: int | None = None,
          deductible_fen: int | None = None, ratio: str | None = None) -> ClaimReported:
    return ClaimReported(
        claim_id=claim_id, policy_number=policy_number, resident_id=number, accident_date=accident,
        reported_on=reported or accident + timedelta(days=2), kind=kind, outcome_date=outcome, disability_grade=grade,
        expenses_fen=expenses_fen, social_insurance_paid_fen=social_insurance_fen, deductible_fen=deductible_fen,
        payment_ratio=Decimal(ratio) if ratio is not None else None,
    )


def death(number: str, *, died: date | None = None, accident: date = ACCIDENT,
          **kwargs) -> ClaimReported:  # type: ignore[no-untyped-def]
    return claim(number, ClaimKind.death, accident=accident, outcome=died or accident + timedelta(days=1), **kwargs)


def disability(number: str, grade: int, *, assessed: date | None = None, accident: date = ACCIDENT,
               **kwargs) -> ClaimReported:  # type: ignore[no-untyped-def]
    return claim(number, ClaimKind.disability, accident=accident, grade=grade,
                 outcome=assessed or accident + timedelta(days=90), **kwargs)


def medical(number: str, expenses_fen: int, *, social_insurance_fen: int = 0, deductible_fen: int = 0,
            ratio: str = "1", **kwargs) -> ClaimReported:  # type: ignore[no-untyped-def]
    return claim(number, ClaimKind.medical, expenses_fen=expenses_fen, social_insurance_fen=social_insurance_fen,
                 deductible_fen=deductible_fen, ratio=ratio, **kwargs)


def paid(claim_: ClaimReported, amount_fen: int, *, paid_on: date = date(2024, 7, 1),
         limited_by: str | None = None) -> ClaimPaid:
    """The payment of a claim as the claims service recorded it."""
    return ClaimPaid(claim_id=claim_.claim_id, policy_number=claim_.policy_number, programme_year=YEAR,
                     township=TOWNSHIP, resident_id=claim_.resident_id.upper(), kind=claim_.kind,
                     accident_date=claim_.accident_date, paid_on=paid_on, amount_fen=amount_fen,
                     computed_fen=amount_fen, limited_by=limited_by)


def settled(claim_: ClaimReported, amount_fen: int, *, ends_cover: str | None = None) -> list:  # type: ignore[type-arg]
    """The history of a claim that was reported and paid (and, if said, ended the person's cover)."""
    history: list = [claim_, paid(claim_, amount_fen)]  # type: ignore[type-arg]
    if ends_cover:
        history.append(CoverEnded(policy_number=claim_.policy_number, resident_id=claim_.resident_id.upper(),
                                  reason=ends_cover, claim_id=claim_.claim_id,
                                  ended_on=claim_.outcome_date if ends_cover == "death" else None))
    return history
