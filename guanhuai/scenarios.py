"""Programme years generated to match published figures, written straight to the log through
the services' own deciders (no broker): for acceptance tests, the demo and benchmarks.

* :func:`mingxi_2020` - the Mingxi 2020 targets, product terms (:func:`mingxi_terms`) and
  households that meet the targets (or a share of them);
* :func:`hongta_2023` - a district year matching the published Hongta 2023 figures;
* :func:`two_counties` - both in one log, each county placed in its city and province (issue #21:
  one deployment, reports at any level).

Every event is what the live services would record for the same inputs (same deciders, same
derived ids); only the transport is skipped.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from guanhuai.simulate import Area, household
from guanhuai.targets import NAMESPACE
from guanhuai.targets import load as load_targets
from guanhuai.targets import AreaAbove, CountyRef, TargetTable, areas_of, derived_id, read_table, table_events
from services.claims.decider import ClaimsState
from services.claims.decider import decide as decide_claim
from services.claims.decider import evolve as evolve_claims
from services.enrollment.decider import EnrollmentState
from services.enrollment.decider import decide as decide_household
from services.enrollment.decider import evolve as evolve_enrollment
from services.enrollment.handlers import stream_of
from services.subsidy.decider import SubsidyState, decide_policy
from services.subsidy.decider import evolve as evolve_subsidy
from shared.domain.calendar import CST, cst_date
from shared.events import EventMessage
from shared.events.claims import ClaimKind, ClaimReported
from shared.events.consumer import outcomes
from shared.events.enrollment import HouseholdCategory, Payer, PolicyIssued
from shared.events.programme import AreaLevel, AreaRegistered, ProductTermsPublished
from shared.events.store import EventStore, StreamAppend
from shared.events.subsidy import SubsidyLine, SubsidyPlanPublished


@dataclass
class Writer:
    """Appends events in batches through the services' deciders."""

    store: EventStore
    batch: list[StreamAppend]
    enrollment: EnrollmentState
    subsidy: SubsidyState
    claims: ClaimsState
    written: int = 0

    @classmethod
    def on(cls, store: EventStore) -> Writer:
        return cls(store, [], EnrollmentState(), SubsidyState(), ClaimsState())

    async def add(self, stream: str, events: list[EventMessage]) -> None:
        self.batch.append(StreamAppend(stream, events))
        if sum(len(b.events) for b in self.batch) >= 2000:
            await self.flush()

    async def flush(self) -> None:
        if self.batch:
            await self.store.append_streams(self.batch)
            self.written += sum(len(b.events) for b in self.batch)
            self.batch = []

    async def register(self, registration: EventMessage) -> PolicyIssued | None:
        outcome = decide_household(registration.payload, self.enrollment)  # type: ignore[arg-type]
        evolve_enrollment(self.enrollment, outcome)
        (policy_event,) = outcomes(registration, [outcome], "enrollment")
        await self.add(stream_of(registration), [registration, policy_event])
        if not isinstance(outcome, PolicyIssued):
            return None
        decided = decide_policy(outcome, self.subsidy)
        if decided:
            for d in decided:
                evolve_subsidy(self.subsidy, d)
            await self.add(f"subsidy-{outcome.policy_number}", outcomes(policy_event, decided, "subsidy"))
        evolve_claims(self.claims, outcome)
        return outcome

    async def publish_terms(self, terms: EventMessage) -> None:
        evolve_enrollment(self.enrollment, terms.payload)  # type: ignore[arg-type]
        await self.add(stream_of(terms), [terms])

    async def publish_plan(self, plan: EventMessage) -> None:
        evolve_subsidy(self.subsidy, plan.payload)  # type: ignore[arg-type]
        await self.add(stream_of(plan), [plan])

    async def claim(self, report: EventMessage) -> None:
        claim = report.payload
        assert isinstance(claim, ClaimReported)
        decided = decide_claim(claim, self.claims, paid_on=cst_date(report.occurred_at))
        evolve_claims(self.claims, claim)
        for d in decided:
            evolve_claims(self.claims, d)
        await self.add(f"claim-{claim.claim_id}", [report, *outcomes(report, decided, "claims")])


def _at(day: date, rng: random.Random) -> datetime:
    return datetime.combine(day, time(9), CST) + timedelta(seconds=rng.randrange(8 * 3600))


def _registration(rng: random.Random, n: int, year: int, town: Area, payer: Payer, category: HouseholdCategory,
                  day: date, members: int | None = None, source: str = "county-sim",
                  taken: set[str] | None = None) -> EventMessage:
    while True:  # reroll the rare household whose generated ID number is taken already
        payload = household(rng, household_id=f"{town.code}-{year}-{n:06d}", year=year, township=town, payer=payer,
                            category=category, paid_on=day, members=members)
        ids = {m.resident_id for m in payload.members}
        if taken is None or (len(ids) == len(payload.members) and not ids & taken):
            break
    if taken is not None:
        taken.update(ids)
    return EventMessage.new(payload, source=source, occurred_at=_at(day, rng),
                            event_id=_uuid(rng))


def _uuid(rng: random.Random):  # type: ignore[no-untyped-def]
    import uuid

    return uuid.UUID(int=rng.getrandbits(128), version=4)


def mingxi_terms(year: int = 2020, *, event_id: uuid.UUID | None = None) -> EventMessage:
    """The Mingxi 100-yuan version (100元版) as the county publishes it for ``year``: 100 yuan per
    unit, 200,000 yuan death/disability divided equally, 14,000 yuan medical shared by the
    household. The seeds do not give the insurer's medical deductible and ratio; these are the
    demo's: 100 yuan per claim and 80%, usual for accident medical cover of this kind."""
    terms = ProductTermsPublished(programme_year=year, product="国寿计划生育家庭意外伤害保险(A款) 100元版",
                                  premium_per_unit_fen=100_00, death_disability_per_unit_fen=200_000_00,
                                  medical_limit_per_unit_fen=14_000_00, deductible_fen=100_00,
                                  payment_ratio=Decimal("0.8"))
    return EventMessage.new(terms, source="mingxi-county", occurred_at=datetime(year, 1, 1, 9, tzinfo=CST),
                            event_id=event_id or uuid.uuid5(NAMESPACE, f"terms/mingxi/{year}"))


def campaign_days(year: int, count: int, rng: random.Random) -> Iterator[date]:
    """Enrolment days spread from 2 January to 30 April (the deadline)."""
    first, span = date(year, 1, 2), (date(year, 4, 30) - date(year, 1, 2)).days + 1
    for _ in range(count):
        yield first + timedelta(days=rng.randrange(span))


async def mingxi_2020(store: EventStore, *, share: float = 1.0, seed: int = 2020) -> dict[str, dict[str, int]]:
    """The Mingxi 2020 targets, then for every township ``share`` of its government-paid and of
    its self-paid target as households (the 机关 row is paid by agencies). Returns, per township
    code, how many government-paid and self-paid policies were written."""
    rng = random.Random(seed)
    table = read_table("mingxi-2020")
    await load_targets(store, table, "mingxi-county")
    writer = Writer.on(store)
    for area in areas_of(table_events(table, "mingxi-county")):
        evolve_enrollment(writer.enrollment, area)
    await writer.publish_terms(mingxi_terms(2020))
    written: dict[str, dict[str, int]] = {}
    taken: set[str] = set()
    n = 0
    for i, row in enumerate(table.townships):
        town = Area(row.code, f"3504{i + 21:02d}")
        agency = row.code == "jiguan"
        plan = [(Payer.agency if agency else Payer.government,
                 HouseholdCategory.agency_staff if agency else HouseholdCategory.two_daughters_sterilised,
                 round(row.target_government * share)),
                (Payer.self_paid, HouseholdCategory.general, round(row.target_self * share))]
        counts = written.setdefault(row.code, {"government": 0, "self": 0})
        for payer, category, count in plan:
            for day in campaign_days(2020, count, rng):
                n += 1
                reg = _registration(rng, n, 2020, town, payer, category, day, source="mingxi-county", taken=taken)
                if await writer.register(reg):
                    counts["self" if payer is Payer.self_paid else "government"] += 1
    await writer.flush()
    return written


# Hongta 2023 as published (红塔区计生协会 2024 budget text, see DOMAIN.md).
HONGTA_2023 = {
    "insured_persons": 59_039,
    "premium_fen": 318_900_000,
    "subsidy_persons": 3_495,
    "subsidy_fen": 14_280_000,
    "claims_paid": 525,
    "claims_paid_fen": 187_790_000,
    "cut_off": date(2023, 9, 30),
}
HONGTA_TOWNS = [Area(f"ht{i:02d}", f"5304{i:02d}") for i in range(1, 12)]  # 11 townships/streets
# Where each seed county lies (the seeds name the counties; their cities and provinces are public
# fact: 明溪县 in 三明市, 福建省; 红塔区 in 玉溪市, 云南省).
ABOVE_MINGXI = [AreaAbove(code="fujian", name="福建省", level=AreaLevel.province),
                AreaAbove(code="sanming", name="三明市", level=AreaLevel.city)]
ABOVE_HONGTA = [AreaAbove(code="yunnan", name="云南省", level=AreaLevel.province),
                AreaAbove(code="yuxi", name="玉溪市", level=AreaLevel.city)]


def hongta_areas() -> list[EventMessage]:
    """红塔区 in 玉溪市, 云南省, and its 11 townships/streets. The seeds do not name them: they are
    registered under stand-in names 红塔01 ... 红塔11 (codes ht01 ... ht11, as the scenario's
    households name them)."""
    when = datetime(2023, 1, 1, tzinfo=CST)
    placed = table_events(TargetTable(source="hongta-district", programme_year=2023, townships=[], above=ABOVE_HONGTA,
                                      county=CountyRef(code="hongta", name="红塔区")), "hongta-district")
    towns = [EventMessage.new(AreaRegistered(code=t.code, name=f"红塔{t.code[2:]}", level=AreaLevel.township, parent_code="hongta"),
                              source="hongta-district", occurred_at=when, event_id=derived_id("area", t.code))
             for t in HONGTA_TOWNS]
    return [e for item in placed for e in item.events] + towns


def hongta_plan() -> EventMessage:
    payload = SubsidyPlanPublished(
        plan_id="HT-2023", programme_year=2023, insurer="中国人寿保险股份有限公司玉溪市红塔区支公司",
        lines=[
            SubsidyLine(code="special-40", label="计生特殊家庭 40元/人", categories=[HouseholdCategory.special_family],
                        rate_fen=4000, head_cap=3195, budget_fen=12_780_000),
            SubsidyLine(code="lost-50", label="失独家庭 50元/人", categories=[HouseholdCategory.lost_only_child],
                        rate_fen=5000, head_cap=300, budget_fen=1_500_000),
        ],
    )
    return EventMessage.new(payload, source="hongta-district", occurred_at=datetime(2023, 1, 3, 9, tzinfo=CST))


async def hongta_2023(store: EventStore, *, seed: int = 2023, late_claims: int = 12, areas: bool = False) -> None:
    """31,890 one-unit policies covering 59,039 persons (27,149 of two, 4,741 of one); 3,195
    special-family persons subsidised at 40 yuan and 300 lost-only-child persons at 50; 525 medical
    claims paid by 30 September totalling 1,877,900 yuan, and ``late_claims`` more paid after.
    With ``areas``, the district and its townships are registered first (:func:`hongta_areas`), and
    enrollment checks the townships households name against them."""
    rng = random.Random(seed)
    writer = Writer.on(store)
    for area in hongta_areas() if areas else []:
        evolve_enrollment(writer.enrollment, area.payload)  # type: ignore[arg-type]
        await writer.add(stream_of(area), [area])
    await writer.publish_plan(hongta_plan())
    sizes = [2] * 27_149 + [1] * 4_741
    rng.shuffle(sizes)
    # Subsidised persons: special-family households of two members (1,597 x 2 + 1 of one = 3,195),
    # lost-only-child households: 150 of two.
    categories = [HouseholdCategory.general] * len(sizes)
    twos = [i for i, s in enumerate(sizes) if s == 2]
    ones = [i for i, s in enumerate(sizes) if s == 1]
    for i in twos[:1597]:
        categories[i] = HouseholdCategory.special_family
    categories[ones[0]] = HouseholdCategory.special_family
    for i in twos[1597:1747]:
        categories[i] = HouseholdCategory.lost_only_child
    policies: list[PolicyIssued] = []
    taken: set[str] = set()
    days = list(campaign_days(2023, len(sizes), rng))
    for n, (size, category, day) in enumerate(zip(sizes, categories, days, strict=True)):
        town = HONGTA_TOWNS[n % len(HONGTA_TOWNS)]
        payer = Payer.government if category is not HouseholdCategory.general else Payer.self_paid
        reg = _registration(rng, n, 2023, town, payer, category, day, members=size, source="hongta-district", taken=taken)
        policy = await writer.register(reg)
        if policy is None:
            raise RuntimeError(f"generated household {n} was not insured")
        policies.append(policy)
    # 525 medical claims by 30 September (ratio 1, no deductible: the amount is the expense).
    total, count = HONGTA_2023["claims_paid_fen"], HONGTA_2023["claims_paid"]
    amounts = [total // count] * count
    amounts[-1] += total - sum(amounts)
    claimed = rng.sample(policies, count + late_claims)
    for k, (policy, amount) in enumerate(zip(claimed, amounts + [200_000] * late_claims, strict=True)):
        late = k >= count
        report_day = date(2023, 10, 15) if late else policy.cover_start.astimezone(CST).date() + timedelta(days=rng.randrange(30, 100))
        report_day = min(report_day, date(2023, 9, 30)) if not late else report_day
        accident = max(policy.cover_start.astimezone(CST).date(), report_day - timedelta(days=3))
        payload = ClaimReported(claim_id=f"HT-C{k:05d}", policy_number=policy.policy_number,
                                resident_id=policy.insured[0].resident_id, accident_date=accident, reported_on=report_day,
                                kind=ClaimKind.medical, expenses_fen=amount, social_insurance_paid_fen=0, deductible_fen=0,
                                payment_ratio="1")
        await writer.claim(EventMessage.new(payload, source="insurer-sim", occurred_at=_at(report_day, rng),
                                            event_id=_uuid(rng)))
    await writer.flush()


async def two_counties(store: EventStore, *, mingxi_share: float = 1.0, late_claims: int = 12) -> None:
    """One log for two counties, as one deployment would keep it: Mingxi 2020 (its targets and
    ``mingxi_share`` of them enrolled) placed in 三明市, 福建省, then Hongta 2023 with its areas,
    in 玉溪市, 云南省. Each county's figures are those of its own scenario."""
    await mingxi_2020(store, share=mingxi_share)
    placed = TargetTable(source="mingxi-county", programme_year=2020, townships=[], above=ABOVE_MINGXI,
                         county=CountyRef(code="mingxi", name="明溪县"))
    await load_targets(store, placed, "mingxi-county")  # after the table: this registration of 明溪县 is the latest
    await hongta_2023(store, late_claims=late_claims, areas=True)
