"""Answering report questions: from the read model, or from the log as of a time."""

from __future__ import annotations

from datetime import datetime

from services.reporting import storage
from services.reporting.report import Report, build_report
from services.reporting.tables import metadata
from shared.domain.calendar import CST
from shared.events.audit import log_head
from shared.events.store import EventStore


async def compute_report(
    store: EventStore,
    year: int,
    *,
    township: str | None = None,
    occurred_before: datetime | None = None,
    until_recorded: datetime | None = None,
    until_position: int | None = None,
    from_log: bool = False,
) -> tuple[Report, str | None]:
    """The report and, if the read model lags the log, a warning saying by how much."""
    if occurred_before or until_recorded or until_position or from_log:
        state = await storage.project(store, occurred_before=occurred_before, until_recorded=until_recorded,
                                      until_position=until_position)
        parts = []
        if occurred_before:
            parts.append(f"happened before {occurred_before.astimezone(CST):%Y-%m-%d %H:%M} CST")
        if until_recorded:
            parts.append(f"recorded by {until_recorded.astimezone(CST):%Y-%m-%d %H:%M:%S} CST")
        if until_position:
            parts.append(f"log positions up to {until_position}")
        basis = "event log: " + ("; ".join(parts) if parts else f"everything up to position {state.position}")
        return await _named(store, build_report(state, year, township=township, basis=basis), state.position), None
    await store.create_schema(metadata)
    state = await store.read(storage.load)
    head = await store.head_position()
    warning = None
    if state.position < head:
        warning = (f"the read model is at log position {state.position} of {head}: start the reporting service, "
                   f"run `guanhuai rebuild`, or use --from-log")
    report = build_report(state, year, township=township, basis=f"read model at log position {state.position}")
    return await _named(store, report, state.position), warning


async def _named(store: EventStore, report: Report, position: int) -> Report:
    """The report with the head of the log prefix it was computed from (DESIGN.md invariant 10)."""
    report.log_head = str(await log_head(store, position))
    return report
