"""`guanhuai publish` answers every row: it waits for each household's policy or rejection in the
log, prints the tally, writes the result file beside the roster (in its format) and exits 1 when
a row was refused or rejected."""

from __future__ import annotations

import csv
import json
import itertools
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook

from guanhuai.rosters import COLUMNS
from shared.domain.identity import make_resident_id
from shared.events import EventMessage
from shared.events.programme import AreaLevel, AreaRegistered
from tests.support.pipeline import Pipeline


@pytest.fixture(scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    """One pipeline for the tests that leave it running (each uses its own households)."""
    workdir = tmp_path_factory.mktemp("publish-outcomes")
    pipeline = Pipeline(workdir, f"sqlite:///{workdir / 'log.db'}")
    try:
        await pipeline.start()
        await register_township(pipeline)
        yield pipeline
    finally:
        await pipeline.stop()


async def register_township(pipeline: Pipeline) -> None:
    areas = [AreaRegistered(code="350421", name="明溪县", level=AreaLevel.county),
             AreaRegistered(code="chengguan", name="城关", level=AreaLevel.township, parent_code="350421")]
    await pipeline.publish("county", [EventMessage.new(a, source="county-test") for a in areas])


def member(household: str, name: str, resident_id: str, relation: str, birth: date, paid_on: str = "2024-03-01") -> list[str]:
    return ["2024", household, "chengguan", "城东村", "二女结扎户", "政府", "", "1", paid_on, "否", name,
            resident_id, relation, birth.isoformat()]


SEQUENCES = itertools.count(100)


def good_household(household: str) -> list[list[str]]:
    """Two members whose ID numbers no other household has (a person is insured once a year)."""
    sequence = next(SEQUENCES)
    return [member(household, "王建国", make_resident_id("350421", date(1975, 4, 12), 2 * sequence + 1), "户主", date(1975, 4, 12)),
            member(household, "李秀英", make_resident_id("350421", date(1978, 9, 3), 2 * sequence), "配偶", date(1978, 9, 3))]


def wrong_check_character(resident_id: str) -> str:
    return resident_id[:17] + ("0" if resident_id[17] != "0" else "1")


def roster_rows(prefix: str) -> list[list[str]]:
    """Two good households; one whose child has a wrong check character (insured without the
    child); one whose only member is 84 (rejected: no eligible member); one unreadable row."""
    child = make_resident_id("350421", date(2010, 6, 1), next(SEQUENCES))
    return [
        *good_household(f"{prefix}-1"),
        *good_household(f"{prefix}-2"),
        member(f"{prefix}-3", "张三", make_resident_id("350421", date(1980, 1, 2), next(SEQUENCES)), "户主", date(1980, 1, 2)),
        member(f"{prefix}-3", "张小明", wrong_check_character(child), "子女", date(2010, 6, 1)),
        member(f"{prefix}-4", "赵老汉", make_resident_id("350421", date(1940, 2, 3), next(SEQUENCES)), "户主", date(1940, 2, 3)),
        member(f"{prefix}-5", "钱某", make_resident_id("350421", date(1981, 3, 4), next(SEQUENCES)), "户主", date(1981, 3, 4),
               paid_on="2024-13-01"),
    ]


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([list(COLUMNS), *rows])
    return path


def write_xlsx(path: Path, rows: list[list[str]]) -> Path:
    book = Workbook()
    for row in [list(COLUMNS), *rows]:
        book.active.append(row)
    book.save(path)
    return path


def publish(pipeline: Pipeline, roster: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GUANHUAI_DB_URL=pipeline.db_url, GUANHUAI_DATA_DIR=str(roster.parent))
    return subprocess.run([sys.executable, "-m", "guanhuai", "publish", str(roster), "--source", "chengguan-office",
                           "--nats-url", pipeline.nats.url, *options], capture_output=True, text=True, timeout=120, env=env)


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text(encoding="utf-8-sig").splitlines()))


def read_xlsx(path: Path) -> list[dict[str, str]]:
    cells = load_workbook(path, read_only=True).worksheets[0].iter_rows(values_only=True)
    header = next(cells)
    return [{h: "" if v is None else str(v) for h, v in zip(header, row, strict=True)} for row in cells]


def assert_every_row_answered(rows: list[dict[str, str]], prefix: str) -> None:
    by_household: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_household.setdefault(row["户编号"], []).append(row)
    for good in (f"{prefix}-1", f"{prefix}-2"):
        assert [r["状态"] for r in by_household[good]] == ["已参保", "已参保"]
        assert by_household[good][0]["保单号"] == f"P2024-chengguan-{good}"
        assert by_household[good][0]["参保人数"] == "2"
    head, child = by_household[f"{prefix}-3"]
    assert (head["状态"], child["状态"]) == ("已参保", "未参保")
    assert head["参保人数"] == "1" and child["保单号"] == f"P2024-chengguan-{prefix}-3"
    assert child["未参保成员及原因"] == "张小明：身份证号校验位错误"
    (old,) = by_household[f"{prefix}-4"]
    assert (old["状态"], old["保单号"], old["拒绝原因"]) == ("已拒绝", "", "无符合条件的成员")
    assert old["未参保成员及原因"] == "赵老汉：首次投保超过 65 周岁"
    (unreadable,) = by_household[f"{prefix}-5"]
    assert unreadable["状态"] == "无法读取" and "缴费日期：不是有效日期（2024-13-01）" in unreadable["拒绝原因"]
    assert [r["姓名"] for r in rows] == ["王建国", "李秀英", "王建国", "李秀英", "张三", "张小明", "赵老汉", "钱某"]


SUMMARY = "已参保 3 户，拒绝 1 户，无法读取 1 行 / 3 insured, 1 rejected, 1 refused"


@pytest.mark.parametrize(("suffix", "write", "read"), [(".csv", write_csv, read_csv), (".xlsx", write_xlsx, read_xlsx)],
                         ids=["csv", "xlsx"])
async def test_publishing_a_roster_answers_every_row_in_a_result_file_of_its_format(
        running: Pipeline, tmp_path: Path, suffix: str, write, read) -> None:  # type: ignore[no-untyped-def]
    prefix = suffix[1:].upper()
    result = publish(running, write(tmp_path / f"roster{suffix}", roster_rows(prefix)))
    assert result.returncode == 1, result.stderr
    assert SUMMARY in result.stdout
    assert_every_row_answered(read(tmp_path / f"roster.结果{suffix}"), prefix)


async def test_publishing_the_same_roster_again_answers_it_again_from_the_log(running: Pipeline, tmp_path: Path) -> None:
    roster = write_csv(tmp_path / "roster.csv", good_household("AGAIN-1"))
    assert publish(running, roster).returncode == 0
    again = publish(running, roster)
    assert again.returncode == 0, again.stderr
    assert "0 published, 1 already published" in again.stdout
    assert "已参保 1 户，拒绝 0 户，无法读取 0 行 / 1 insured, 0 rejected, 0 refused" in again.stdout


async def test_no_wait_returns_without_outcomes_and_exits_0_when_nothing_was_refused(running: Pipeline, tmp_path: Path) -> None:
    roster = write_csv(tmp_path / "roster.csv", good_household("NOWAIT-1"))
    result = publish(running, roster, "--no-wait")
    assert result.returncode == 0, result.stderr
    assert "1 published" in result.stdout and "insured" not in result.stdout
    assert not (tmp_path / "roster.结果.csv").exists()


async def test_the_wait_gives_up_after_the_timeout_naming_how_many_are_unanswered(pipeline: Pipeline, tmp_path: Path) -> None:
    pipeline.kill("enrollment")
    roster = write_csv(tmp_path / "roster.csv", good_household("LATE-1") + good_household("LATE-2"))
    started = time.monotonic()
    result = publish(pipeline, roster, "--timeout", "2")
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    assert "2 households still unanswered after 2 s" in result.stderr
    assert "0 insured, 0 rejected, 0 refused, 2 unanswered" in result.stdout
    assert {r["状态"] for r in read_csv(tmp_path / "roster.结果.csv")} == {"未答复"}


async def test_a_roster_naming_its_township_by_name_gives_one_row_of_that_township_and_a_result_for_each_row(
        running: Pipeline, tmp_path: Path) -> None:
    """The issue's phantom-township roster: 乡镇 = 城关 (the registered name, as the template shows
    it), not the code. Every row is answered, and the report has one 城关 row, its rejection in it."""
    rows = [[*row[:2], "城关", *row[3:]] for row in roster_rows("BYNAME")[:-1]]  # (without the unreadable row)
    before = chengguan_figures(running)  # (the module's pipeline holds other tests' households too)
    result = publish(running, write_csv(tmp_path / "roster.csv", rows))
    assert result.returncode == 1, result.stderr
    answered = read_csv(tmp_path / "roster.结果.csv")
    assert [r["状态"] for r in answered] == ["已参保"] * 5 + ["未参保", "已拒绝"]
    assert {r["保单号"] for r in answered if r["状态"] == "已参保"} == {f"P2024-chengguan-BYNAME-{n}" for n in (1, 2, 3)}

    after = chengguan_figures(running)
    assert tuple(a - b for a, b in zip(after, before, strict=True)) == (4, 1, 3)


def chengguan_figures(pipeline: Pipeline) -> tuple[int, int, int]:
    """Registrations, rejections and policies of the report's one row for chengguan (城关); no
    other row has any registration."""
    env = dict(os.environ, GUANHUAI_DB_URL=pipeline.db_url)
    report = subprocess.run([sys.executable, "-m", "guanhuai", "report", "--year", "2024", "--from-log", "--format", "json"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert report.returncode == 0, report.stderr
    townships = [r for r in json.loads(report.stdout)["townships"] if r["registrations"]]
    if not townships:
        return (0, 0, 0)
    assert [(r["township"], r["township_name"]) for r in townships] == [("chengguan", "城关")]
    return townships[0]["registrations"], townships[0]["registrations_rejected"], townships[0]["policies"]
