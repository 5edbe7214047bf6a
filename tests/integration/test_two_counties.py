"""Many counties, one deployment (issue #21): Mingxi 2020 and Hongta 2023 in one log, each placed
in its city and province. Each county's report reproduces its own published figures; every level
above is the exact sum of the level below (money in fen); the CLI, the API and the dashboard
report at any level, the dashboard letting a user pick the area."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from guanhuai.embedded import free_port
from guanhuai.scenarios import HONGTA_2023, two_counties
from guanhuai.targets import Target, area_target
from services.reporting.projection import COUNTERS
from services.reporting.report import Report
from services.reporting.rollup import area_report
from services.reporting.storage import rebuild
from shared.domain.calendar import end_of_day
from shared.events.store import EventStore, StreamAppend
from tests.integration.test_reporting_acceptance import MINGXI_ANNEX

CUT_OFF = end_of_day(HONGTA_2023["cut_off"])
HONGTA_PUBLISHED = {"insured_persons": 59_039, "premium_fen": 318_900_000, "subsidy_persons": 3_495,
                    "subsidy_fen": 14_280_000, "claims_paid": 525, "claims_paid_fen": 187_790_000}
LEVELS = ("province", "city", "county", "township")


@pytest.fixture(scope="module")
def log(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Both counties' years in one SQLite log, the read model rebuilt from it; and 三明市's own
    target for 明溪县 in 2020 (8,000 policies: not a published figure, a city's target to show)."""
    db_url = f"sqlite:///{tmp_path_factory.mktemp('two-counties') / 'log.db'}"

    async def prepare() -> None:
        store = await EventStore.open(db_url)
        await two_counties(store)
        own = area_target(2020, "mingxi", Target(target_total=8000, target_government=6800, target_self=1200), "sanming-city")
        await store.append_streams([StreamAppend("targets-2020-mingxi", [own])])
        await rebuild(store)
        await store.close()

    asyncio.run(prepare())
    return db_url


def report(db_url: str, year: int, **options: object) -> Report:
    async def read() -> Report:
        store = await EventStore.open(db_url)
        try:
            return (await area_report(store, year, **options))[0]  # type: ignore[arg-type]
        finally:
            await store.close()

    return asyncio.run(read())


def figures(row) -> tuple[int, ...]:  # type: ignore[no-untyped-def]
    return tuple(getattr(row.figures, c) for c in COUNTERS)


def test_each_county_reproduces_its_own_published_figures(log: str) -> None:
    mingxi = report(log, 2020, area="明溪县", level="township")
    assert {r.township_name: (r.figures.target_total, r.figures.target_government, r.figures.target_self)
            for r in mingxi.rows} == MINGXI_ANNEX
    assert {r.township_name: (r.figures.policies, r.policies_government_all, r.figures.policies_self)
            for r in mingxi.rows} == MINGXI_ANNEX
    assert (mingxi.total.figures.target_total, mingxi.total.figures.policies) == (7704, 7704)

    hongta = report(log, 2023, area="红塔区", occurred_before=CUT_OFF)
    assert len(hongta.rows) == 11 and {r.level for r in hongta.rows} == {"township"}
    assert {k: getattr(hongta.total.figures, k) for k in HONGTA_PUBLISHED} == HONGTA_PUBLISHED
    assert hongta.total.record()["loss_ratio"] == pytest.approx(0.5889)
    # Neither county sees the other's figures in its own report.
    assert report(log, 2023, area="明溪县").rows == [] and report(log, 2020, area="红塔区").rows == []


@pytest.mark.parametrize("year", [2020, 2023])
def test_every_level_is_the_exact_sum_of_the_level_below_up_to_the_whole_deployment(log: str, year: int) -> None:
    whole = report(log, year)  # the read model: townships of all areas
    for depth, level in enumerate(LEVELS):
        rows = report(log, year, level=level)
        assert figures(rows.total) == figures(whole.total) == tuple(map(sum, zip(*map(figures, rows.rows), strict=True)))
        if level == "township":
            continue
        for row in rows.rows:
            children = report(log, year, area=row.figures.township, level=LEVELS[depth + 1])
            assert figures(children.total) == figures(row) == tuple(map(sum, zip(*map(figures, children.rows), strict=True)))


def test_the_provinces_add_up_to_the_deployment_and_each_is_its_county(log: str) -> None:
    mingxi = report(log, 2020, area="mingxi")
    hongta = report(log, 2023, area="hongta", occurred_before=CUT_OFF)
    for year, county, province, cut_off in ((2020, mingxi, "福建省", None), (2023, hongta, "云南省", CUT_OFF)):
        provinces = report(log, year, level="province", occurred_before=cut_off)
        assert [r.township_name for r in provinces.rows] == [province]  # the other county has no figures that year
        assert figures(provinces.rows[0]) == figures(county.total) == figures(provinces.total)
    assert [r.township_name for r in report(log, 2020, area="福建省", level="county").rows] == ["明溪县"]
    assert [r.township_name for r in report(log, 2023, area="云南省", level="city").rows] == ["玉溪市"]


def test_a_citys_own_target_for_a_county_is_shown_beside_the_sum_of_its_townships(log: str) -> None:
    (mingxi,) = report(log, 2020, area="三明市", level="county").rows
    assert (mingxi.township_name, mingxi.figures.target_total, mingxi.area_target) == ("明溪县", 7704, (8000, 6800, 1200))
    assert report(log, 2020, area="明溪县").total.area_target == (8000, 6800, 1200)
    assert report(log, 2020, level="county").total.figures.target_total == 7704  # never added into a sum
    shown = subprocess.run([sys.executable, "-m", "guanhuai", "targets", "show", "--year", "2020", "--format", "json",
                            "--db-url", log], capture_output=True, text=True, timeout=120)
    targets = json.loads(shown.stdout)
    assert (len(targets), sum(t["target_total"] for t in targets)) == (10, 7704)  # the townships' table, as published


def test_the_cli_reports_at_any_level(log: str) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "guanhuai", "report", "--db-url", log, *args],
                              capture_output=True, text=True, timeout=120)

    counties = run("--year", "2020", "--area", "三明市", "--level", "county", "--format", "json")
    body = json.loads(counties.stdout)
    assert (body["level"], body["area"]["name"], [r["township_name"] for r in body["townships"]]) == ("county", "三明市", ["明溪县"])
    assert (body["townships"][0]["policies"], body["townships"][0]["area_target_total"]) == (7704, 8000)
    townships = run("--year", "2020", "--area", "明溪县", "--level", "township")
    assert townships.returncode == 0 and "城关" in townships.stdout and "合计（明溪县）" in townships.stdout
    refused = run("--year", "2020", "--area", "明溪县", "--level", "province")
    assert refused.returncode == 2 and "its rows can be at its level or below" in refused.stderr


@pytest.fixture(scope="module")
def served(log: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    out = (tmp_path_factory.mktemp("api") / "api.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", "guanhuai", "serve", "api", "--db-url", log, "--port", str(port)],
                               stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, GUANHUAI_LOG_JSON="true"))
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/years", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "the API did not start"
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(20)
        out.close()


def test_the_api_reports_at_any_level(served: str) -> None:
    assert httpx.get(f"{served}/api/years").json() == [2020, 2023]
    hongta = httpx.get(f"{served}/api/report", params={"year": 2023, "area": "红塔区", "as_of": date(2023, 9, 30).isoformat()}).json()
    assert {k: hongta["total"][k] for k in HONGTA_PUBLISHED} == HONGTA_PUBLISHED
    provinces = httpx.get(f"{served}/api/report", params={"year": 2023, "level": "province", "as_of": "2023-09-30"}).json()
    assert [r["township_name"] for r in provinces["townships"]] == ["云南省"]
    assert provinces["townships"][0]["premium_fen"] == provinces["total"]["premium_fen"] == 318_900_000
    csv_rows = httpx.get(f"{served}/api/report", params={"year": 2020, "area": "sanming", "level": "county",
                                                          "format": "csv", "raw": "true"}).text.splitlines()
    assert csv_rows[1].split(",")[:3] == ["2020", "mingxi", "明溪县"]
    wrong = httpx.get(f"{served}/api/report", params={"year": 2020, "area": "长汀县"})
    assert wrong.status_code == 422 and "长汀县" in wrong.json()["detail"]


def test_the_dashboard_lets_a_user_pick_the_area(served: str) -> None:
    page = httpx.get(f"{served}/dashboard", params={"year": 2020, "area": "sanming", "level": "county"}).text
    assert '<select id="area" name="area">' in page and '<option value="sanming" selected>' in page
    for option in ("福建省（省）", "三明市（市）", "明溪县（县/区）", "云南省（省）", "玉溪市（市）", "红塔区（县/区）"):
        assert option in page
    assert '<option value="county" selected>县/区</option>' in page
    assert "三明市2020年" in page and "<th>县/区</th>" in page and '<div class="kpi">本级下达任务数' not in page
    assert '<td>明溪县</td><td>7704</td><td>7704</td>' in page  # the county row: target, policies
    county = httpx.get(f"{served}/dashboard", params={"year": 2020, "area": "明溪县", "level": ""}).text
    assert 'id="kpi-area-target">8000<' in county and "<th>乡镇</th>" in county and "合计（明溪县）" in county
