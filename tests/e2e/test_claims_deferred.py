"""End to end (issue #17, break 10): claims published before their households, or in the same burst,
wait for their policies and are decided when they arrive; none is rejected ``unknown_policy``."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from services.claims.tables import deferred
from services.enrollment.decider import EnrollmentState
from services.enrollment.decider import decide as enrol
from services.enrollment.decider import evolve as enrolled
from services.reporting.service import compute_report
from shared.events.claims import ClaimKind
from shared.events.enrollment import PolicyIssued
from shared.events.store import EventStore
from tests.support.pipeline import Pipeline
from tests.support.probes import probe
from tests.support.programme import claim, households, medical


def insured_households(count: int) -> list:  # type: ignore[type-arg]
    """Registrations that enrolment will turn into policies (a claim on a rejected household would
    rightly wait for a policy that never comes)."""
    state, out = EnrollmentState(), []
    for reg in households(count, seed=17):
        outcome = enrol(reg.payload, state)  # type: ignore[arg-type]
        enrolled(state, outcome)
        if isinstance(outcome, PolicyIssued):
            out.append(reg)
    return out


async def test_claims_sent_before_or_with_their_households_are_all_decided_when_the_policies_arrive(pipeline: Pipeline) -> None:
    regs = insured_households(40)[:30]
    claims = [claim(reg, ClaimKind.death, f"B-{n}") if n % 4 == 0 else medical(reg, f"B-{n}") for n, reg in enumerate(regs)]
    early, burst = claims[:15], claims[15:]

    # The first claims reach the log before any household is even sent: they wait.
    await pipeline.publish("insurer", early)
    await pipeline.wait_for(lambda c: c["ClaimDeferred"] == len(early))
    store = await EventStore.open(pipeline.db_url, create=False)
    waiting_report, _ = await compute_report(store, 2024, from_log=True)
    assert waiting_report.total.figures.claims_deferred == len(early)

    # Then every household, with the other claims in the same burst.
    await asyncio.gather(pipeline.publish("county", regs), pipeline.publish("insurer", burst))
    await pipeline.wait_for(lambda c: c["ClaimPaid"] + c["ClaimRejected"] == len(claims))
    await pipeline.settled()

    log = [e async for batch in store.read_all() for e in batch]
    decided = {e.payload.claim_id: e for e in log if e.event_type in ("ClaimPaid", "ClaimRejected")}
    with store.engine.connect() as conn:
        deferred_left = (conn.execute(select(func.count()).select_from(deferred))).scalar_one()
    report, _ = await compute_report(store, 2024)
    await store.close()
    paid = sum(1 for e in decided.values() if e.event_type == "ClaimPaid")
    rejected = [e.payload.reason for e in decided.values() if e.event_type == "ClaimRejected"]
    lost = sum(1 for c in claims if c.payload.claim_id not in decided) - deferred_left  # type: ignore[attr-defined]
    probe("claim_before_policy", sent=len(claims), paid=paid, rejected=len(rejected), deferred_left=deferred_left, lost=lost)

    assert "unknown_policy" not in rejected
    assert (deferred_left, lost, len(decided)) == (0, 0, len(claims))
    assert paid == len(claims) - len(rejected) and paid >= len(claims) // 2
    assert (report.total.figures.claims_deferred, report.total.figures.claims_reported) == (0, len(claims))
