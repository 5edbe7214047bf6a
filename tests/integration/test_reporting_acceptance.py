"""The published tables, reproduced: Mingxi 2020 (targets and completion) and Hongta 2023."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from guanhuai.scenarios import HONGTA_2023, hongta_2023, mingxi_2020
from services.reporting.exports import write_xlsx
from services.reporting.service import compute_report
from shared.domain.calendar import end_of_day
from shared.events.store import EventStore

MINGXI_ANNEX = {  # 乡镇: (指导任务数, 政府投保, 自主投保)
    "城关": (475, 375, 100), "雪峰": (407, 307, 100), "瀚仙": (605, 455, 150), "沙溪": (287, 187, 100),
    "夏阳": (654, 504, 150), "胡坊": (474, 324, 150), "盖洋": (973, 823, 150), "枫溪": (317, 217, 100),
    "夏坊": (512, 412, 100), "机关": (3000, 3000, 0),
}


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[EventStore]:
    store = await EventStore.open(f"sqlite:///{tmp_path / 'log.db'}")
    yield store
    await store.close()


async def test_a_full_mingxi_year_reproduces_the_annex_table_with_full_completion(sqlite_store: EventStore) -> None:
    await mingxi_2020(sqlite_store)
    report, _ = await compute_report(sqlite_store, 2020, from_log=True)
    table = {r.township_name: (r.figures.target_total, r.figures.target_government, r.figures.target_self) for r in report.rows}
    assert table == MINGXI_ANNEX
    achieved = {r.township_name: (r.figures.policies, r.policies_government_all, r.figures.policies_self) for r in report.rows}
    assert achieved == MINGXI_ANNEX
    assert [r.township_name for r in report.rows] == list(MINGXI_ANNEX)  # the annex's order
    total = report.total
    assert (total.figures.target_total, total.figures.target_government, total.figures.target_self) == (7704, 6604, 1100)
    assert (total.figures.policies, total.policies_government_all, total.figures.policies_self) == (7704, 6604, 1100)
    for row in [*report.rows, total]:
        derived = row.derived()
        assert derived["completion_rate"] == Decimal("1.0000")
        assert derived["completion_rate_government"] == Decimal("1.0000")


async def test_a_partial_mingxi_year_shows_each_townships_completion_rate(sqlite_store: EventStore) -> None:
    written = await mingxi_2020(sqlite_store, share=0.4)
    report, _ = await compute_report(sqlite_store, 2020, from_log=True)
    for row in report.rows:
        got = written[row.figures.township]
        assert row.figures.policies == got["government"] + got["self"]
        expected = (Decimal(got["government"] + got["self"]) / row.figures.target_total).quantize(Decimal("0.0001"))
        assert row.derived()["completion_rate"] == expected
        assert Decimal("0.39") < expected < Decimal("0.41")
    self_paid = report.rows[0].derived()["completion_rate_self"]
    assert self_paid == Decimal(written["chengguan"]["self"]) / 100


async def test_a_report_as_of_a_date_counts_only_what_had_happened_by_then(sqlite_store: EventStore) -> None:
    await mingxi_2020(sqlite_store, share=0.2)
    full, _ = await compute_report(sqlite_store, 2020, from_log=True)
    by_deadline, _ = await compute_report(sqlite_store, 2020, occurred_before=end_of_day(date(2020, 4, 30)))
    january, _ = await compute_report(sqlite_store, 2020, occurred_before=end_of_day(date(2020, 1, 31)))
    issued_in_january = 0
    async for batch in sqlite_store.read_all(event_types=["PolicyIssued"]):
        issued_in_january += sum(1 for e in batch if e.payload.issued_on <= date(2020, 1, 31))
    assert by_deadline.total.figures.policies == full.total.figures.policies
    assert january.total.figures.policies == issued_in_january
    assert 0 < issued_in_january < full.total.figures.policies
    assert january.total.figures.target_total == 7704  # targets were set before


async def test_a_generated_hongta_year_reproduces_the_published_figures_as_of_30_september(sqlite_store: EventStore) -> None:
    await hongta_2023(sqlite_store, late_claims=12)
    report, _ = await compute_report(sqlite_store, 2023, occurred_before=end_of_day(HONGTA_2023["cut_off"]))
    total = report.total.figures
    assert total.insured_persons == 59_039
    assert total.premium_fen == 318_900_000  # 3,189,000 yuan
    assert total.subsidy_persons == 3_495
    assert total.subsidy_fen == 14_280_000  # 142,800 yuan
    assert total.claims_paid == 525
    assert total.claims_paid_fen == 187_790_000  # 1,877,900 yuan
    # The loss ratio we compute, and how: 1,877,900 / 3,189,000 = 58.89% (the publication says 52.00%).
    record = report.total.record()
    assert record["loss_ratio"] == pytest.approx(0.5889)
    assert (record["loss_ratio_numerator_fen"], record["loss_ratio_denominator_fen"]) == (187_790_000, 318_900_000)
    assert "claims paid (yuan) / premium (yuan)" in report.as_json()["loss_ratio_rule"]
    later, _ = await compute_report(sqlite_store, 2023, from_log=True)
    assert later.total.figures.claims_paid == 525 + 12  # paid after the cut-off

    # The same figures in the forms county staff and tools read.
    csv_lines = report.csv().splitlines()
    assert csv_lines[0].startswith("programme_year,township,township_name,target_total")
    assert csv_lines[-1].split(",")[2] == "合计"
    xlsx = Path(sqlite_store.engine.url.database).with_suffix(".xlsx")  # type: ignore[arg-type]
    write_xlsx(report, xlsx)
    with zipfile.ZipFile(io.BytesIO(xlsx.read_bytes())) as book:
        strings = book.read("xl/sharedStrings.xml").decode()
    assert "乡镇" in strings and "赔付率" in strings and "合计" in strings
