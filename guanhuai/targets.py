"""Yearly township targets (指导性任务表): load a county's table into the log, read it back.

A target table file names the county, its townships (the hierarchy is data: each township becomes
an ``AreaRegistered`` event) and each township's target for the year (``TownshipTargetSet``).
Event ids are derived from the county, year and township, so loading the same table twice
records nothing new.

Above the county (issue #21): a table may name the areas the county lies in (``above``: its
province, then its city), registered with it, the county naming the last as its parent; and the
county's own target for the year as its city set it (``county.target``), recorded as a
``TownshipTargetSet`` naming the county. Reports show such a target beside the sum of the
townships' targets, never added into it (services/reporting/rollup.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from services.enrollment.areas import record_areas
from services.enrollment.decider import area_of
from services.enrollment.tables import metadata as enrollment_tables
from shared.domain.areas import Areas, AreaTree, Unresolved, level_rank
from shared.domain.calendar import CST
from shared.events import EventMessage
from shared.events.programme import AreaLevel, AreaRegistered, TownshipTargetSet
from shared.events.store import AppendResult, EventStore, StreamAppend, Transaction

NAMESPACE = uuid.UUID("6c1e3f7e-0d1b-4f7a-9a57-6775616e6875")  # guanhuai's namespace for derived ids
BUILTIN = {"mingxi-2020": "mingxi-2020.json"}


class TownshipRow(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    name: str
    target_total: int = Field(ge=0)
    target_government: int = Field(ge=0)
    target_self: int = Field(ge=0)


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_total: int = Field(ge=0)
    target_government: int = Field(ge=0)
    target_self: int = Field(ge=0)


class CountyRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    name: str
    target: Target | None = None  # the county's own target, as its city set it


class AreaAbove(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str
    name: str
    level: AreaLevel


class TargetTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str
    programme_year: int
    county: CountyRef
    townships: list[TownshipRow]
    above: list[AreaAbove] = Field(default=[], description="the county's province, then its city")


def area_target(year: int, code: str, target: Target, source: str, *parts: object) -> EventMessage:
    """The own target of an area above the townships (a county, city or province) for a year."""
    return EventMessage.new(
        TownshipTargetSet(programme_year=year, township=code, target_total=target.target_total,
                          target_government=target.target_government, target_self=target.target_self),
        source=source, occurred_at=datetime(year, 1, 1, tzinfo=CST), event_id=derived_id("target", code, year, *parts))


def read_table(name_or_path: str) -> TargetTable:
    if name_or_path in BUILTIN:
        text = resources.files("guanhuai.data").joinpath(BUILTIN[name_or_path]).read_text(encoding="utf-8")
    else:
        text = Path(name_or_path).read_text(encoding="utf-8")
    return TargetTable.model_validate(json.loads(text))


def derived_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts))


def table_events(table: TargetTable, source: str) -> list[StreamAppend]:
    year, county = table.programme_year, table.county
    when = datetime(year, 1, 1, tzinfo=CST)
    areas = []
    for parent, area in zip([None, *(a.code for a in table.above)], table.above, strict=False):
        areas.append(EventMessage.new(AreaRegistered(code=area.code, name=area.name, level=area.level, parent_code=parent),
                                      source=source, occurred_at=when, event_id=derived_id("area", area.code)))
    city = table.above[-1].code if table.above else None
    # A county placed under a city is another registration of it (another id): the one without a parent stays as recorded.
    areas.append(EventMessage.new(AreaRegistered(code=county.code, name=county.name, level=AreaLevel.county, parent_code=city),
                                  source=source, occurred_at=when,
                                  event_id=derived_id("area", county.code, *(("in", city) if city else ()))))
    targets = [area_target(year, county.code, county.target, source, "own")] if county.target else []
    for row in table.townships:
        areas.append(EventMessage.new(
            AreaRegistered(code=row.code, name=row.name, level=AreaLevel.township, parent_code=county.code),
            source=source, occurred_at=when, event_id=derived_id("area", row.code),
        ))
        targets.append(EventMessage.new(
            TownshipTargetSet(programme_year=year, township=row.code, target_total=row.target_total,
                              target_government=row.target_government, target_self=row.target_self),
            source=source, occurred_at=when, event_id=derived_id("target", county.code, year, row.code),
        ))
    return [StreamAppend(f"area-{e.payload.code}", [e]) for e in areas] + (
        [StreamAppend(f"targets-{county.code}-{year}", targets)] if targets else [])


@dataclass(frozen=True)
class TargetRow:
    township: str
    name: str
    target_total: int
    target_government: int
    target_self: int


def areas_of(batch: list[StreamAppend]) -> list[AreaRegistered]:
    return [e.payload for item in batch for e in item.events if isinstance(e.payload, AreaRegistered)]


async def load(store: EventStore, table: TargetTable, source: str) -> int:
    """Append the table's events; returns how many were new. The areas newly recorded go to
    enrollment's table of areas too, in the same transaction: enrollment resolves the townships
    households name against it, as if they had come to it over NATS."""
    await store.create_schema(enrollment_tables)
    batch = table_events(table, source)

    def append(tx: Transaction) -> list[AppendResult]:
        results = tx.append_streams(batch)
        record_areas(tx.connection, areas_of([b for b, r in zip(batch, results, strict=True) if not r.already_stored]))
        return results

    results = await store.write(append)
    return sum(len(r.positions) for r in results if not r.already_stored)


async def targets_for_year(store: EventStore, year: int) -> list[TargetRow]:
    """The township targets of a year as the log has them (the latest setting per township wins).
    An area's own target above the townships (a county's, set by its city) is no township's: it is
    left out here, so that the townships' targets sum to the table's total (reports show it beside)."""
    names: dict[str, str] = {}
    areas = Areas()
    latest: dict[str, TownshipTargetSet] = {}
    async for batch in store.read_all(event_types=["AreaRegistered", "TownshipTargetSet"]):
        for event in batch:
            p = event.payload
            if isinstance(p, AreaRegistered):
                names[p.code] = p.name
                areas.register(area_of(p))
            elif isinstance(p, TownshipTargetSet) and p.programme_year == year:
                township = areas.township(p.township)  # by code, name or alias, as reports read it
                if isinstance(township, Unresolved) and _above_townships(areas, p.township):
                    continue
                latest[p.township if isinstance(township, Unresolved) else township] = p
    return [
        TargetRow(code, names.get(code, code), t.target_total, t.target_government, t.target_self)
        for code, t in latest.items()
    ]


def _above_townships(areas: Areas, sent: str) -> bool:
    found = AreaTree.of(areas.by_code.values()).find(sent)
    return not isinstance(found, Unresolved) and level_rank(areas.by_code[found].level) < level_rank("township")
