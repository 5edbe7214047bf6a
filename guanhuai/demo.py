"""``guanhuai demo``: the whole system on embedded parts, fed a county year, then its report.

Starts an embedded nats-server (data directory under the project, free port), uses an SQLite log,
runs all services, publishes the Mingxi 2020 areas and targets, the year's product terms (the
100-yuan version, ``guanhuai.scenarios.mingxi_terms``), a subsidy plan, a simulated year of
households across the townships and a season of claims, waits until every service has caught
up, prints the township report, and stops everything it started.

The subsidy plan follows the shape of Hongta's budget (DOMAIN.md): special families only, 40
yuan a person in 计生特殊家庭 and 50 in 失独 / 独生子女伤残 families, paying part of a premium
whose payer pays the rest; no policy is subsidised above its premium (the subsidy rule refuses
the persons past it, ``premium_covered``). The other priority groups are paid by their township
in full. Every published event has a
fixed id, so a second run records nothing new and prints the same report.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from guanhuai.scenarios import campaign_days, mingxi_terms
from guanhuai.simulate import Area, household
from guanhuai.stack import Stack, connect
from guanhuai.targets import NAMESPACE, read_table, table_events
from services.enrollment.decider import policy_number
from services.reporting.report import Report
from services.reporting.service import compute_report
from shared.domain.calendar import CST
from shared.events import EventMessage
from shared.events.claims import ClaimKind, ClaimReported
from shared.events.enrollment import HouseholdCategory, HouseholdRegistered, Payer
from shared.events.store import EventStore
from shared.events.subjects import inbound_subject
from shared.events.subsidy import SubsidyLine, SubsidyPlanPublished

Progress = Callable[[str, int, int], None]
YEAR = 2020
PRIORITY = [HouseholdCategory.two_daughters_sterilised, HouseholdCategory.single_daughter_certified,
            HouseholdCategory.special_family, HouseholdCategory.poor, HouseholdCategory.poverty_relief]


def _id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "demo/" + "/".join(map(str, parts)))


def county_inputs(government_share: float, self_share: float) -> tuple[list[EventMessage], list[EventMessage]]:
    """(areas, targets and the plan; households) as the county's system would send them."""
    table = read_table("mingxi-2020")
    setup = [e for item in table_events(table, "mingxi-county") for e in item.events]
    setup.append(mingxi_terms(YEAR, event_id=_id("terms")))
    plan = SubsidyPlanPublished(
        plan_id="MX-2020", programme_year=YEAR, insurer="中国人寿保险股份有限公司明溪县支公司",
        lines=[SubsidyLine(code="special-40", label="计生特殊家庭 40元/人", categories=[HouseholdCategory.special_family],
                           rate_fen=4000, head_cap=1500, budget_fen=6_000_000),
               SubsidyLine(code="special-50", label="失独、独生子女伤残家庭 50元/人",
                           categories=[HouseholdCategory.lost_only_child, HouseholdCategory.only_child_disabled],
                           rate_fen=5000, head_cap=1500, budget_fen=7_500_000)],
    )
    setup.append(EventMessage.new(plan, source="mingxi-county", occurred_at=datetime(YEAR, 3, 17, 9, tzinfo=CST),
                                  event_id=_id("plan")))
    rng = random.Random(YEAR)
    households: list[EventMessage] = []
    taken: set[str] = set()
    for i, row in enumerate(table.townships):
        town = Area(row.code, f"3504{i + 21:02d}")
        agency = row.code == "jiguan"
        groups = [(Payer.agency if agency else Payer.government, round(row.target_government * government_share)),
                  (Payer.self_paid, round(row.target_self * self_share))]
        for payer, count in groups:
            for n, day in enumerate(campaign_days(YEAR, count, rng)):
                category = (HouseholdCategory.agency_staff if agency else HouseholdCategory.general
                            if payer is Payer.self_paid else rng.choice([*PRIORITY, HouseholdCategory.lost_only_child]))
                couple = 2 if category is HouseholdCategory.lost_only_child else None  # they lost their only child
                while True:
                    payload = household(rng, household_id=f"{row.code}-{payer.value}-{n:05d}", year=YEAR, township=town,
                                        payer=payer, category=category, paid_on=day, members=couple)
                    ids = {m.resident_id for m in payload.members}
                    if len(ids) == len(payload.members) and not ids & taken:
                        taken |= ids
                        break
                when = datetime.combine(day, time(9), CST) + timedelta(minutes=rng.randrange(480))
                households.append(EventMessage.new(payload, source="mingxi-county", occurred_at=when,
                                                   event_id=_id("household", payload.household_id)))
    return setup, households


def claims_season(households: list[EventMessage], count: int = 60) -> list[EventMessage]:
    """Claims the insurer reports from May to September on some of the year's households."""
    rng = random.Random(YEAR + 1)
    out = []
    for k, reg in enumerate(rng.sample(households, count)):
        h = reg.payload
        assert isinstance(h, HouseholdRegistered)
        person = rng.choice(h.members)
        accident = max(date(YEAR, 5, 1) + timedelta(days=rng.randrange(140)), h.paid_on + timedelta(days=1))
        kind = ClaimKind.death if k == 30 else ClaimKind.disability if k % 15 == 7 else ClaimKind.medical
        figures: dict[str, Any] = {}
        if kind is ClaimKind.medical:  # the deductible and ratio are the policy's (the year's product terms)
            figures = {"expenses_fen": rng.randrange(80_000, 800_000), "social_insurance_paid_fen": 30_000}
        else:
            figures = {"outcome_date": accident + timedelta(days=20)}
            if kind is ClaimKind.disability:
                figures["disability_grade"] = rng.randrange(9, 11)
        payload = ClaimReported(claim_id=f"MX-C{k:04d}", policy_number=policy_number(h), resident_id=person.resident_id,
                                accident_date=accident, reported_on=accident + timedelta(days=3), kind=kind, **figures)
        out.append(EventMessage.new(payload, source="insurer-mingxi", event_id=_id("claim", k),
                                    occurred_at=datetime.combine(accident + timedelta(days=3), time(10), CST)))
    return out


async def publish(js: Any, kind: str, events: list[EventMessage], label: str, progress: Progress) -> None:
    pending = []
    for n, event in enumerate(events, start=1):
        pending.append(await js.publish_async(inbound_subject(kind, event.event_type), event.model_dump_json().encode(),
                                              headers={"Nats-Msg-Id": str(event.event_id)}))
        if len(pending) >= 500 or n == len(events):
            await asyncio.gather(*pending)
            pending.clear()
            progress(label, n, len(events))


async def run(data_dir: Path, progress: Progress, government_share: float = 0.6, self_share: float = 0.5) -> tuple[Report, Stack]:
    data_dir.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite:///{(data_dir / 'guanhuai.db').resolve()}"
    stack = Stack(data_dir, db_url, log_level="WARNING").start()
    try:
        store = await EventStore.open(db_url)
        nc = await connect(stack.nats_url or "")
        js = nc.jetstream(timeout=10, publish_async_max_pending=1000)
        await stack.wait_ready(js)
        setup, households = county_inputs(government_share, self_share)
        await publish(js, "county", setup, "county set-up (areas, targets, subsidy plan)", progress)
        await wait_caught_up(stack, js, store, progress, "recording the set-up")
        await publish(js, "county", households, "households registered by the townships", progress)
        await wait_caught_up(stack, js, store, progress, "enrolment, subsidies, reports")
        await publish(js, "insurer", claims_season(households), "claims reported by the insurer", progress)
        await wait_caught_up(stack, js, store, progress, "claims, reports")
        report, _ = await compute_report(store, YEAR)
        await nc.close()
        await store.close()
        return report, stack
    finally:
        stack.stop()


async def wait_caught_up(stack: Stack, js: Any, store: EventStore, progress: Progress, label: str,
                         timeout: float = 600) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    quiet = 0
    while True:
        done, lag = await stack.caught_up(js, store)
        head = lag["log_head"]
        progress(label, head - lag["reporting_behind"], max(head, 1))
        quiet = quiet + 1 if done else 0
        if quiet >= 3:  # caught up three polls in a row: nothing is still moving
            return
        if stack.exited():
            raise RuntimeError(f"{', '.join(stack.exited())} stopped; see {stack.logs}")
        if loop.time() > deadline:
            raise TimeoutError(f"not caught up after {timeout}s: {lag}")
        await asyncio.sleep(0.3)
