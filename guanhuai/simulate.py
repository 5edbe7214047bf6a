"""Synthetic but rule-abiding programme data: households with valid ID numbers, as a county
would register them. Used by benchmarks, tests and the demo; deterministic for a given seed."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from shared.domain.calendar import CST
from shared.domain.identity import make_resident_id
from shared.events.base import EventMessage
from shared.events.enrollment import HouseholdCategory, HouseholdRegistered, Member, Payer, Relation

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何罗高林"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华"


@dataclass(frozen=True)
class Area:
    code: str
    region: str  # the 6-digit region code used in ID numbers


def _name(rng: random.Random) -> str:
    return rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.randint(1, 2)))


def _birth(rng: random.Random, year: int, min_age: int, max_age: int) -> date:
    start = date(year - max_age, 1, 1)
    end = date(year - min_age, 12, 31)
    return start + timedelta(days=rng.randrange((end - start).days))


def household(
    rng: random.Random,
    *,
    household_id: str,
    year: int,
    township: Area,
    payer: Payer,
    category: HouseholdCategory,
    paid_on: date,
    members: int | None = None,
) -> HouseholdRegistered:
    count = members or rng.choice((2, 3, 3, 3, 4))
    people = []
    for i in range(count):
        if i == 0:
            relation, birth = Relation.head, _birth(rng, year, 25, 60)
        elif i == 1:
            relation, birth = Relation.spouse, _birth(rng, year, 25, 60)
        else:
            relation, birth = Relation.child, _birth(rng, year, 1, 20)
        resident_id = make_resident_id(township.region, birth, rng.randrange(1000))
        people.append(Member(name=_name(rng), resident_id=resident_id, relation=relation, birth_date=birth))
    return HouseholdRegistered(
        household_id=household_id,
        programme_year=year,
        township=township.code,
        category=category,
        payer=payer,
        units=1,
        members=people,
        paid_on=paid_on,
    )


def registration_messages(
    rng: random.Random, count: int, *, year: int, townships: list[Area], source: str = "county-sim"
) -> Iterator[EventMessage]:
    """``count`` HouseholdRegistered messages spread over the townships and January-April."""
    for n in range(count):
        town = townships[n % len(townships)]
        paid_on = date(year, 1, 2) + timedelta(days=rng.randrange(118))
        payer = Payer.government if rng.random() < 0.8 else Payer.self_paid
        category = HouseholdCategory.special_family if payer is Payer.government else HouseholdCategory.general
        payload = household(
            rng, household_id=f"{town.code}-{year}-{n:07d}", year=year, township=town,
            payer=payer, category=category, paid_on=paid_on,
        )
        occurred = datetime.combine(paid_on, time(9), CST) + timedelta(seconds=rng.randrange(8 * 3600))
        yield EventMessage.new(payload, source=source, occurred_at=occurred, event_id=uuid.UUID(int=rng.getrandbits(128), version=4))
