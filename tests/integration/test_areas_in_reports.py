"""Areas by code or registered name (issue #18), against the real databases: the Mingxi target
table loaded with ``guanhuai targets load``'s function, a roster that names its townships in
Chinese (乡镇 = 城关) fed through enrollment's handler as the pipeline feeds it, and the reporting
projection over the log: one 城关 row, with its target and its rejected households."""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

from guanhuai.rosters import read_events
from guanhuai.targets import load, read_table
from services.enrollment.handlers import EnrollmentHandler
from services.enrollment.tables import metadata as enrollment_tables
from services.reporting.projection import apply
from services.reporting.report import build_report
from services.reporting.storage import load as load_read_model
from services.reporting.storage import project, rebuild
from services.reporting.views import Fact, TargetView
from shared.domain.calendar import CST
from shared.domain.identity import make_resident_id
from shared.events import EventMessage
from shared.events.consumer import Incoming, process_batch
from shared.events.inbox import metadata as inbox_tables
from shared.events.programme import AreaLevel, AreaRegistered, TownshipTargetSet
from shared.events.store import EventStore
from shared.events.subjects import inbound_subject
from tests.unit.builders import registration

HEADINGS = ["投保年度", "户编号", "乡镇", "村", "类别", "缴费方", "缴费单位", "份数", "缴费日期", "续保", "姓名", "身份证号", "与户主关系", "出生日期"]


def sent(messages: list[EventMessage], first: int = 1) -> list[Incoming]:
    return [Incoming(subject=inbound_subject("county", m.event_type), body=m.model_dump_json().encode(),
                     headers={"Nats-Msg-Id": str(m.event_id)}, stream="GUANHUAI_IN_COUNTY", sequence=n)
            for n, m in enumerate(messages, first)]


def roster(path: Path, households: list[tuple[str, str, str]]) -> Path:
    """One member a household: (household number, 乡镇 as written, resident ID number)."""
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADINGS)
        for household, township, number in households:
            writer.writerow(["2020", household, township, "", "二女结扎户", "政府", "", "1", "2020-03-02", "否", "王建国",
                             number, "户主", "1980-05-01"])
    return path


def person(sequence: int) -> str:
    return make_resident_id("350421", date(1980, 5, 1), sequence)


async def test_a_roster_naming_townships_in_chinese_gives_one_row_per_registered_township(
    store: EventStore, tmp_path: Path,
) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    await load(store, read_table("mingxi-2020"), "mingxi-county")  # areas (城关 is chengguan) and targets
    bad_check = person(13)[:17] + ("0" if person(13)[17] != "0" else "1")
    file = roster(tmp_path / "roster.csv", [
        ("CG-1", "城关", person(11)),  # by name
        ("CG-2", "chengguan", person(12)),  # by code
        ("CG-3", "城关", bad_check),  # by name, rejected by the rules (no_eligible_member)
        ("CG-4", "城关镇", person(14)),  # a name no township goes by
    ])
    parsed = read_events(file, "chengguan-office")
    assert not parsed.problems
    await process_batch(store, EnrollmentHandler(), sent(parsed.events))

    report = build_report(await project(store), 2020)
    by_name = {r.township_name: r.figures for r in report.rows}
    assert [r.figures.township for r in report.rows if r.township_name == "城关"] == ["chengguan"]
    assert not {"城关", "城关镇"} & {r.figures.township for r in report.rows}
    chengguan = by_name["城关"]
    assert (chengguan.target_total, chengguan.policies, chengguan.registrations, chengguan.registrations_rejected) == (475, 2, 3, 1)
    unknown = by_name["（保单或地区不明）"]
    assert (unknown.registrations, unknown.registrations_rejected, unknown.target_total) == (1, 1, 0)
    assert report.rejections == {"no_eligible_member": 1, "unknown_area": 1}
    assert report.total.figures.registrations == 4


async def test_a_target_and_a_household_naming_a_registered_alias_count_for_that_township(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    county = AreaRegistered(code="mingxi", name="明溪县", level=AreaLevel.county)
    chengguan = AreaRegistered(code="chengguan", name="城关", level=AreaLevel.township, parent_code="mingxi",
                               aliases=["城关镇"])
    target = TownshipTargetSet(programme_year=2020, township="城关镇", target_total=10, target_government=10, target_self=0)
    typo = TownshipTargetSet(programme_year=2020, township="城关区", target_total=7, target_government=7, target_self=0)
    household = registration(year=2020, township="城关镇", village=None, paid_on=date(2020, 3, 2))
    events = [EventMessage.new(p, source="mingxi-county") for p in (county, chengguan, target, typo, household)]
    await process_batch(store, EnrollmentHandler(), sent(events))

    report = build_report(await project(store), 2020)
    assert [(r.figures.township, r.figures.target_total, r.figures.policies) for r in report.rows] == [("chengguan", 10, 1)]


async def test_the_read_model_keeps_the_aliases_a_later_target_is_named_by(store: EventStore) -> None:
    await store.create_schema(inbox_tables, enrollment_tables)
    county = AreaRegistered(code="mingxi", name="明溪县", level=AreaLevel.county)
    chengguan = AreaRegistered(code="chengguan", name="城关", level=AreaLevel.township, parent_code="mingxi",
                               aliases=["城关镇"])
    await process_batch(store, EnrollmentHandler(), sent([EventMessage.new(p, source="mingxi-county") for p in (county, chengguan)]))
    built = await rebuild(store)
    state = await store.read(load_read_model)  # as the live projection starts from it
    target = TargetView(programme_year=2020, township="城关镇", target_total=10, target_government=10, target_self=0)
    apply(state, Fact(built.position + 1, datetime(2020, 1, 2, tzinfo=CST), target))
    assert [(r.figures.township, r.figures.target_total) for r in build_report(state, 2020).rows] == [("chengguan", 10)]
