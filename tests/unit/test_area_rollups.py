"""Reports at any level of the area tree (issue #21): given any tree of provinces, cities,
counties and townships and any township figures (money in fen), a row of a level is exactly the
sum of its children's rows, and the rows of any level add up to the same whole."""

from __future__ import annotations

from dataclasses import asdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.reporting.dashboard import render
from services.reporting.projection import COUNTERS, UNKNOWN, ReportState, TownshipYear
from services.reporting.report import OUTSIDE, AreaProblem, Report, build_report
from shared.domain.areas import Area, AreaTree

YEAR = 2023
LEVELS = ("province", "city", "county", "township")
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def deployments(draw: st.DrawFn) -> ReportState:
    """A registered tree (each area under a random area of the level above, or, for a county, under
    none: a county that never named its city), township rows with random counters, some rows for
    townships no one registered, and sometimes the "(unknown)" row."""
    state = ReportState()
    position = 0
    codes: dict[str, list[str]] = {level: [] for level in LEVELS}
    for depth, level in enumerate(LEVELS):
        for n in range(draw(st.integers(1, 4))):
            code = f"{level[0]}{n}"
            parent = None
            if depth:
                above = codes[LEVELS[depth - 1]]
                parent = None if level == "county" and draw(st.booleans()) and n == 0 else draw(st.sampled_from(above))
            position += 1
            state.areas[code] = (f"{level}-{n}", level, parent, position)
            codes[level].append(code)
    towns = codes["township"] + draw(st.lists(st.sampled_from(["stray-1", "stray-2", UNKNOWN]), max_size=2, unique=True))
    counter = st.integers(0, 10**12)  # fen: far beyond any float's exact integers when summed
    for town in towns:
        state.townships[(YEAR, town)] = TownshipYear(YEAR, town, **{c: draw(counter) for c in COUNTERS})
    state.townships[(YEAR - 1, towns[0])] = TownshipYear(YEAR - 1, towns[0], policies=7)  # another year: not counted
    return state


def figures(row: TownshipYear) -> tuple[int, ...]:
    return tuple(getattr(row, c) for c in COUNTERS)


def summed(report: Report) -> tuple[int, ...]:
    return tuple(sum(getattr(r.figures, c) for r in report.rows) for c in COUNTERS)


@FEW
@given(state=deployments())
def test_the_rows_of_every_level_add_up_exactly_to_the_whole(state: ReportState) -> None:
    whole = tuple(sum(getattr(r, c) for k, r in state.townships.items() if k[0] == YEAR) for c in COUNTERS)
    for level in LEVELS:
        report = build_report(state, YEAR, level=level)
        assert {r.level for r in report.rows} == {level}
        assert summed(report) == figures(report.total.figures) == whole
        assert all(type(getattr(r.figures, c)) is int for r in report.rows for c in COUNTERS)  # fen stay integers


@FEW
@given(state=deployments())
def test_a_parent_row_is_exactly_the_sum_of_its_children_rows(state: ReportState) -> None:
    for depth, level in enumerate(LEVELS[:-1]):
        parents = {r.figures.township: r for r in build_report(state, YEAR, level=level).rows}
        for code, row in parents.items():
            if code == OUTSIDE:
                continue
            children = build_report(state, YEAR, area=code, level=LEVELS[depth + 1])
            assert summed(children) == figures(children.total.figures) == figures(row.figures)
            tree = AreaTree.of(Area(c, n, lv, p) for c, (n, lv, p, _pos) in state.areas.items())
            assert all(tree.ancestor_at(r.figures.township, level) == code for r in children.rows)
            assert children.area == {"code": code, "name": state.areas[code][0], "level": level}


def two_counties() -> ReportState:
    state = ReportState()
    tree = [("fj", "福建省", "province", None), ("sm", "三明市", "city", "fj"), ("mingxi", "明溪县", "county", "sm"),
            ("chengguan", "城关", "township", "mingxi"), ("xuefeng", "雪峰", "township", "mingxi"),
            ("yn", "云南省", "province", None), ("yx", "玉溪市", "city", "yn"), ("hongta", "红塔区", "county", "yx"),
            ("ht01", "城关", "township", "hongta")]  # a township name two counties have
    for n, (code, name, level, parent) in enumerate(tree, 1):
        state.areas[code] = (name, level, parent, n)
    for n, town in enumerate(["chengguan", "xuefeng", "ht01"], 1):
        state.townships[(YEAR, town)] = TownshipYear(YEAR, town, policies=n, premium_fen=n * 100_00, target_total=10)
    return state


def test_an_area_is_named_by_code_or_name_and_its_rows_are_the_level_below_by_default() -> None:
    state = two_counties()
    by_name = build_report(state, YEAR, area="明溪县")
    assert (by_name.level, [r.township_name for r in by_name.rows]) == ("township", ["城关", "雪峰"])
    assert by_name.total.township_name == "合计（明溪县）" and by_name.total.figures.policies == 3
    assert [r.township_name for r in build_report(state, YEAR, area="fj").rows] == ["三明市"]
    provinces = build_report(state, YEAR, level="province")
    assert [(r.township_name, r.figures.premium_fen) for r in provinces.rows] == [("福建省", 300_00), ("云南省", 300_00)]
    assert provinces.total.figures.premium_fen == 600_00


def test_an_own_target_of_an_area_is_shown_beside_the_sum_of_its_townships_targets_not_added() -> None:
    state = two_counties()
    report = build_report(state, YEAR, level="county", area_targets={"mingxi": (25, 20, 5)})
    mingxi, hongta = report.rows
    assert (mingxi.figures.target_total, mingxi.area_target, mingxi.record()["area_target_total"]) == (20, (25, 20, 5), 25)
    assert (hongta.area_target, hongta.record()["area_target_total"]) == (None, None)
    assert report.total.figures.target_total == 30  # the townships' targets, summed; no own target in it
    assert build_report(state, YEAR, area="mingxi", area_targets={"mingxi": (25, 20, 5)}).total.area_target == (25, 20, 5)


@pytest.mark.parametrize(("area", "level", "says"), [
    ("城关", None, "names 2 areas"),  # two counties' 城关: send the code
    ("长汀县", None, "no registered area"),
    ("明溪县", "city", "its rows can be at its level or below"),
    ("明溪县", "village", "reports go down to townships"),
    (None, "district", "is none of"),
])
def test_an_area_or_level_there_is_no_report_of_is_refused_saying_why(area: str | None, level: str | None, says: str) -> None:
    with pytest.raises(AreaProblem, match=says):
        build_report(two_counties(), YEAR, area=area, level=level)


def test_a_loop_of_parents_ends_the_walk_up() -> None:
    tree = AreaTree.of([Area("a", "A", "county", "b"), Area("b", "B", "city", "a"), Area("t", "T", "township", "a")])
    assert (tree.ancestor_at("t", "city"), tree.ancestor_at("t", "province")) == ("b", None)


def test_the_township_report_of_all_areas_is_what_it_was() -> None:
    state = two_counties()
    report = build_report(state, YEAR)
    assert [asdict(r.figures) for r in report.rows] == [asdict(state.townships[(YEAR, t)]) for t in ("chengguan", "xuefeng", "ht01")]
    assert report.level == "township" and report.area is None and report.total.township_name == "合计"


def test_the_dashboard_offers_every_area_above_the_townships_or_only_those_within_the_readers_area() -> None:
    state = two_counties()
    page = render(build_report(state, YEAR, area="sm", level="county"), [YEAR])
    picker = page[page.index('<form id="area-picker"'):page.index("</form>", page.index('<form id="area-picker"'))]
    assert [o.split(">")[1].split("<")[0].strip("\u3000") for o in picker.split("<option")[1:-4]] == [
        "全部地区", "福建省（省）", "三明市（市）", "明溪县（县/区）", "云南省（省）", "玉溪市（市）", "红塔区（县/区）"]
    assert '<option value="sm" selected>' in picker and '<option value="county" selected>县/区</option>' in picker
    assert "城关" not in picker  # townships are rows, not choices
    own = render(build_report(state, YEAR, area="mingxi"), [YEAR], within="mingxi")
    assert "明溪县（县/区）" in own and "红塔区" not in own and "全部地区" not in own
