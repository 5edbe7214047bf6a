"""Small builders of realistic events for tests."""

from __future__ import annotations

from datetime import date, datetime

from shared.domain.calendar import CST
from shared.domain.identity import make_resident_id
from shared.events import EventMessage
from shared.events.enrollment import HouseholdCategory, HouseholdRegistered, Member, Payer, Relation
from shared.events.programme import TownshipTargetSet


def target(township: str = "chengguan", total: int = 475, government: int = 375, year: int = 2020) -> EventMessage:
    payload = TownshipTargetSet(
        programme_year=year, township=township, target_total=total, target_government=government,
        target_self=total - government,
    )
    return EventMessage.new(payload, source="county-test", occurred_at=datetime(year, 3, 17, 9, tzinfo=CST))


def household(household_id: str = "H1", members: int = 3, year: int = 2024) -> EventMessage:
    people = [
        Member(name=f"成员{i}", resident_id=make_resident_id("350421", date(1980 + i, 5, 1), 10 + i),
               relation=Relation.head if i == 0 else Relation.spouse if i == 1 else Relation.child,
               birth_date=date(1980 + i, 5, 1))
        for i in range(members)
    ]
    payload = HouseholdRegistered(
        household_id=household_id, programme_year=year, township="chengguan", category=HouseholdCategory.general,
        payer=Payer.self_paid, members=people, paid_on=date(year, 3, 1),
    )
    return EventMessage.new(payload, source="county-test", occurred_at=datetime(year, 3, 1, 10, tzinfo=CST))
