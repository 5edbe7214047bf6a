"""The read-only HTTP API over the reporting read models (JSON and CSV), with its OpenAPI
document at /openapi.json and the dashboard at /dashboard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse
from sqlalchemy import distinct, select

from services.reporting import tables as t
from services.reporting.dashboard import render
from services.reporting.service import compute_report
from shared.domain.calendar import CST, end_of_day
from shared.events.store import EventStore

DESCRIPTION = """Read-only access to the reporting read models of guanhuai (关怀), the system of record
for the family-planning household accident insurance programme (计划生育家庭意外伤害保险).

Money is in integer fen (100 fen = 1 yuan). Ratios are decimals (0.5889 = 58.89%). The loss ratio is
claims paid / premium for the same programme year, township and cut-off; both figures are given.
Reports can be computed as of a date (`as_of`, what had happened by the end of that day, China
Standard Time) or as known at a time (`known_at`, what the log had recorded by then)."""


def create_api(db_url: str) -> FastAPI:
    state: dict[str, EventStore] = {}

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        store = await EventStore.open(db_url)
        await store.create_schema(t.metadata)
        state["store"] = store
        yield
        await store.close()

    app = FastAPI(title="guanhuai reporting API", version="1", description=DESCRIPTION, lifespan=lifespan)

    async def report_for(year: int, township: str | None, as_of: date | None, known_at: datetime | None):  # type: ignore[no-untyped-def]
        if known_at is not None and known_at.tzinfo is None:
            known_at = known_at.replace(tzinfo=CST)
        report, _warning = await compute_report(
            state["store"], year, township=township, occurred_before=end_of_day(as_of) if as_of else None,
            until_recorded=known_at,
        )
        if township is not None and not report.rows:
            raise HTTPException(404, f"no township {township!r} in {year}")
        return report

    @app.get("/api/years", summary="Programme years with figures")
    async def years() -> list[int]:
        async with state["store"].engine.connect() as conn:
            rows = await conn.execute(select(distinct(t.township_year.c.programme_year)).order_by(t.township_year.c.programme_year))
            return [r[0] for r in rows]

    @app.get("/api/report", summary="Township and county figures of a programme year",
             responses={200: {"content": {"application/json": {}, "text/csv": {}}}})
    async def report(
        year: Annotated[int, Query(ge=2000, le=2200, description="programme year (投保年度)")],
        township: Annotated[str | None, Query(max_length=100, description="one township, by name or code")] = None,
        as_of: Annotated[date | None, Query(description="only what had happened by the end of this date (CST)")] = None,
        known_at: Annotated[datetime | None, Query(description="what the log knew at this time (recorded_at)")] = None,
        format: Literal["json", "csv"] = "json",
    ) -> Any:
        result = await report_for(year, township, as_of, known_at)
        if format == "csv":
            return PlainTextResponse(result.csv(), media_type="text/csv; charset=utf-8")
        return result.as_json()

    @app.get("/dashboard", response_class=HTMLResponse, summary="The dashboard page (Chinese)")
    async def dashboard(year: Annotated[int | None, Query(ge=2000, le=2200)] = None) -> str:
        known = await years()
        chosen = year or (known[-1] if known else datetime.now(CST).year)
        return render(await report_for(chosen, None, None, None), known)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    return app
