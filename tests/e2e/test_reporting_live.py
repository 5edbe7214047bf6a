"""The live reporting projection ends exactly where a rebuild from the log alone ends."""

from __future__ import annotations

import random
import subprocess
import sys
from typing import Any

from sqlalchemy import select

from services.reporting import tables as t
from services.reporting.service import compute_report
from shared.events.claims import ClaimKind
from shared.events.store import EventStore
from tests.support.pipeline import Pipeline
from tests.support.programme import claim, households, medical, plan, unknown_policy_claim


async def dump(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    store = await EventStore.open(db_url, create=False)
    try:
        return await store.read(lambda conn: {table.name: sorted(tuple(r) for r in conn.execute(select(table)))
                                              for table in t.READ_MODEL_TABLES})
    finally:
        await store.close()


async def test_rebuild_from_the_log_equals_the_live_read_model_after_a_random_workload(pipeline: Pipeline) -> None:
    rng = random.Random(4242)
    await pipeline.publish("county", [plan(head_cap=rng.randrange(20, 60))])
    regs = households(rng.randrange(60, 90), seed=rng.randrange(1000))
    await pipeline.publish("county", regs + regs[: rng.randrange(1, 5)])  # some sent twice
    await pipeline.wait_for(lambda c: c["PolicyIssued"] + c["HouseholdRejected"] >= len(regs))
    claims = []
    for n, reg in enumerate(rng.sample(regs, 12)):
        kind = rng.choice(["medical", "medical", "death"])
        claims.append(medical(reg, f"R-{n}", expenses_fen=rng.randrange(50_000, 2_000_000)) if kind == "medical"
                      else claim(reg, ClaimKind.death, f"R-{n}"))
    claims.append(unknown_policy_claim("R-unknown"))
    await pipeline.publish("insurer", claims)
    await pipeline.wait_for(lambda c: c["ClaimPaid"] + c["ClaimRejected"] + c["ClaimDeferred"] == len(claims))  # R-unknown waits
    counts = await pipeline.settled()

    live = await dump(pipeline.db_url)
    store = await EventStore.open(pipeline.db_url, create=False)
    head = await store.head_position()
    await store.close()
    assert live["report_checkpoint"] == [("township-year-v1", head)]
    registrations = [c.name for c in t.township_year.columns].index("registrations")
    assert sum(r[registrations] for r in live["report_township_year"]) == counts["HouseholdRegistered"]

    result = subprocess.run([sys.executable, "-m", "guanhuai", "rebuild", "--db-url", pipeline.db_url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rebuilt = await dump(pipeline.db_url)
    assert rebuilt == live

    store = await EventStore.open(pipeline.db_url, create=False)
    from_read_model, warning = await compute_report(store, 2024)
    from_log, _ = await compute_report(store, 2024, from_log=True)
    await store.close()
    assert warning is None
    assert from_read_model.as_json()["townships"] == from_log.as_json()["townships"]
