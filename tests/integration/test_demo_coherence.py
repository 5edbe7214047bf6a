"""The demo's county year is coherent: what ``guanhuai demo`` publishes, decided by the services'
own rules (guanhuai.scenarios.Writer, no broker) into a real log, reports no township with more
subsidy than premium, and its claims are paid from the product terms on the policies."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from guanhuai.demo import YEAR, claims_season, county_inputs
from guanhuai.scenarios import Writer
from services.enrollment.decider import evolve as evolve_enrollment
from services.enrollment.handlers import stream_of
from services.reporting.service import compute_report
from shared.events.programme import AreaRegistered, ProductTermsPublished
from shared.events.store import EventStore
from shared.events.subsidy import SubsidyPlanPublished


@pytest.fixture
async def demo_log(tmp_path: Path) -> AsyncIterator[EventStore]:
    """The demo's inputs at the shares ``guanhuai demo`` uses by default, decided into a log."""
    store = await EventStore.open(f"sqlite+aiosqlite:///{tmp_path / 'log.db'}")
    writer = Writer.on(store)
    setup, households = county_inputs(government_share=0.6, self_share=0.5)
    for event in setup:
        match event.payload:
            case ProductTermsPublished():
                await writer.publish_terms(event)
            case SubsidyPlanPublished():
                await writer.publish_plan(event)
            case AreaRegistered():
                evolve_enrollment(writer.enrollment, event.payload)
                await writer.add(stream_of(event), [event])
            case _:
                await writer.add(stream_of(event), [event])
    for registration in households:
        await writer.register(registration)
    for claim in claims_season(households):
        await writer.claim(claim)
    await writer.flush()
    yield store
    await store.close()


async def test_no_township_in_the_demo_report_has_more_subsidy_than_premium(demo_log: EventStore) -> None:
    report, _ = await compute_report(demo_log, YEAR, from_log=True)

    over = {r.township_name: (r.figures.subsidy_fen, r.figures.premium_fen) for r in [*report.rows, report.total]
            if r.figures.subsidy_fen > r.figures.premium_fen}
    assert over == {}
    assert report.total.figures.subsidy_fen > 0  # the plan subsidises someone


async def test_the_demos_claims_are_paid_from_the_terms_on_their_policies(demo_log: EventStore) -> None:
    policies = [e.payload async for batch in demo_log.read_all(event_types=["PolicyIssued"]) for e in batch]
    rejected = Counter([e.payload.reason async for batch in demo_log.read_all(event_types=["ClaimRejected"]) for e in batch])

    assert {(p.deductible_fen, str(p.payment_ratio), p.premium_fen // p.units) for p in policies} == {(100_00, "0.8", 100_00)}
    assert rejected["terms_not_stated"] == rejected["terms_mismatch"] == 0
