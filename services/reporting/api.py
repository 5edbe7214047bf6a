"""The read-only HTTP API over the reporting read models (JSON and CSV), with its OpenAPI
document at /openapi.json and the dashboard at /dashboard."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Query, Request, Response, Security
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.security import HTTPBearer
from fastapi_offline import FastAPIOffline
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from sqlalchemy import select

from services.reporting import tables as t
from services.reporting.dashboard import login_page, render
from services.reporting.exports import csv_for_people, write_xlsx
from services.reporting.safe import cutoff_problem
from services.reporting.report import AreaProblem
from services.reporting.rollup import area_report
from services.reporting.tokens import EVERYTHING, Scope, Tokens
from shared.domain.calendar import CST, end_of_day
from shared.events.store import EventStore

DESCRIPTION = """Read-only access to the reporting read models of guanhuai (关怀), the system of record
for the family-planning household accident insurance programme (计划生育家庭意外伤害保险).

Money is in integer fen (100 fen = 1 yuan). Ratios are decimals (0.5889 = 58.89%). The loss ratio is
claims paid / premium for the same programme year, township and cut-off; both figures are given.
Reports can be computed as of a date (`as_of`, what had happened by the end of that day, China
Standard Time) or as known at a time (`known_at`, what the log had recorded by then)."""


MAX_URL_BYTES = 2048
HEAD_HEADER = "X-Guanhuai-Log-Head"  # POSITION:HASH of the log prefix a report was computed from
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
RATE_PER_S = 20.0
BURST = 40.0
SESSION_COOKIE = "guanhuai_session"
SESSION_SECONDS = 12 * 3600
LOGIN_BODY_BYTES = 4096


class Limits:
    """Per-client limits (the ``limits`` library, in memory, a moving window): BURST requests at
    once, then RATE_PER_S a second on average (the window is BURST / RATE_PER_S seconds)."""

    def __init__(self, rate: float = RATE_PER_S, burst: float = BURST) -> None:
        amount = max(1, round(burst))
        self.item = RateLimitItemPerSecond(amount, max(1, round(amount / rate)))
        self.limiter = MovingWindowRateLimiter(MemoryStorage())  # forgets a client once its window has passed

    def allow(self, client: str) -> bool:
        return self.limiter.hit(self.item, client)


def create_api(db_url: str, *, token: str | None = None, rate_per_s: float = RATE_PER_S,
               tokens: Tokens | None = None) -> FastAPI:
    """The API; with ``token`` set, every request must carry ``Authorization: Bearer <token>``
    (whether it may run without one is decided where it is served: guanhuai/serve.py). ``tokens``:
    scoped tokens (services/reporting/tokens.py), each reading the reports of its own area only."""
    state: dict[str, EventStore] = {}
    limits = Limits(rate_per_s, max(rate_per_s * 2, 1))
    bearer = HTTPBearer(auto_error=False, description="the API token (GUANHUAI_API_TOKEN)")
    expected = token.encode() if token else None
    tokens = tokens or Tokens()
    secured = expected is not None or bool(tokens)
    # The browser's cookie never holds the token: it holds an expiry, which token signed in (""
    # for GUANHUAI_API_TOKEN, a prefix of a scoped token's hash) and an HMAC of them under a key
    # made at start-up, so a restart signs every browser out.
    session_key = secrets.token_bytes(32)

    def session_for(expires: int, ident: str = "") -> str:
        message = f"{expires}.{ident}.".encode() + (expected or b"")
        return f"{expires}.{ident}.{hmac.new(session_key, message, hashlib.sha256).hexdigest()}"

    def session_scope(value: str | None) -> Scope | None:
        """The scope of a valid session cookie, or None."""
        expires, _, rest = (value or "").partition(".")
        ident = rest.partition(".")[0]
        # ASCII digits only, and few: int() refuses "²" (a digit to isdigit) and 5000 digits.
        if not (expires.isascii() and expires.isdigit()) or len(expires) > 12 or int(expires) < time.time():
            return None
        scope = EVERYTHING if ident == "" and expected is not None else tokens.by_ident.get(ident)
        if scope is None or not hmac.compare_digest(value.encode("latin-1", "replace"),  # type: ignore[union-attr]
                                                    session_for(int(expires), ident).encode("latin-1", "replace")):
            return None
        return scope

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        store = await EventStore.open(db_url)
        await store.create_schema(t.metadata)
        state["store"] = store
        yield
        await store.close()

    description = DESCRIPTION + f"""

Limits: read-only (GET only; a request with a body is refused, 413); URLs up to {MAX_URL_BYTES} bytes
(414); {rate_per_s:g} requests a second per client on average (429 with Retry-After)."""
    if secured:
        description += "\n\nEvery request needs `Authorization: Bearer <token>` (401 otherwise)."
    if tokens:
        description += (" A county's token reads the reports of its own area and the areas below it: a request "
                        "naming any other area is refused (403); a report naming no area is of the token's own.")
    # With a token, the bearer scheme is declared on every operation (OpenAPI); it is enforced in
    # the guard below, so that the OpenAPI document and the docs page are covered as well.
    # FastAPIOffline serves the Swagger UI and ReDoc assets from its own package (/static-offline-docs),
    # not from a CDN, so /docs and /redoc work on an intranet without internet access.
    app = FastAPIOffline(title="guanhuai reporting API", version="1", description=description, lifespan=lifespan,
                         dependencies=[Security(bearer)] if secured else None)

    async def authenticated(request: Request) -> Scope | None:
        """What the request's token (or session) may read; None: no valid token."""
        credentials = await bearer(request)
        # Header values arrive decoded as latin-1: compare bytes, so any byte a client sends is
        # just a wrong token (compare_digest refuses non-ASCII str).
        given = credentials.credentials.encode("latin-1") if credentials else b""
        if expected is not None and hmac.compare_digest(given, expected):
            return EVERYTHING
        return tokens.scope_of(given) or session_scope(request.cookies.get(SESSION_COOKIE))

    @app.middleware("http")
    async def guard(request: Request, call_next):  # type: ignore[no-untyped-def]
        # The login and logout forms are the only requests that may be posted, the login with a small body.
        posting = request.method == "POST" and request.url.path in ("/login", "/logout")
        if request.method not in ("GET", "HEAD") and not posting:
            return JSONResponse({"detail": "this API is read-only"}, status_code=405)
        length = (request.headers.get("content-length") or "0").strip()
        if "transfer-encoding" in request.headers or not length.isdigit() or int(length) > (LOGIN_BODY_BYTES if posting else 0):
            return JSONResponse({"detail": "requests carry no body"}, status_code=413)
        if len(str(request.url)) > MAX_URL_BYTES:
            return JSONResponse({"detail": "URL too long"}, status_code=414)
        # Before authentication: a wrong token costs the caller like any request, so guessing is limited too.
        if not limits.allow(request.client.host if request.client else "?"):
            return JSONResponse({"detail": "too many requests"}, status_code=429, headers={"Retry-After": "1"})
        open_paths = ("/login", "/logout")
        scope = await authenticated(request) if secured and request.url.path not in open_paths else EVERYTHING
        if scope is None:
            if "text/html" in request.headers.get("accept", "") and request.method == "GET":
                return RedirectResponse("/login", status_code=303)  # a browser: to the login form
            return JSONResponse({"detail": "missing or wrong token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        if scope.area is not None and request.url.path == "/metrics":  # the operator's, all counties in one
            return JSONResponse({"detail": "this token reads the reports of its own area only"}, status_code=403)
        request.state.scope = scope  # what the report routes check the area asked for against (area_for)
        return await call_next(request)

    async def area_for(request: Request, area: str | None, township: str | None) -> str | None:
        """The area a report is given for: the one asked for, or a county token's own; refused (403)
        when a county token names an area that is not its area or below it: every area the text
        could name (code, name or alias) must be, so no reading of a name leaks. A township is
        taken within that area (the report's rows are the area's only), so a county's own 城关 is
        its own even where other counties have one; a township none of whose namesakes is the
        token's is refused too."""
        scope: Scope = request.state.scope
        if scope.area is None:
            return area
        tree = await state["store"].read(lambda conn: {r.code: r for r in conn.execute(select(
            t.areas.c.code, t.areas.c.name, t.areas.c.parent_code, t.areas.c.aliases))})

        def named(text: str) -> list[bool]:
            return [under(tree, code, scope.area) for code, r in tree.items()  # type: ignore[arg-type]
                    if text in (code, r.name) or text in json.loads(r.aliases or "[]")]

        asked = named(area or scope.area)
        if not asked or not all(asked) or (township is not None and not any(named(township))):
            raise HTTPException(403, f"this token reads the reports of area {scope.area} and below only")
        return area or scope.area

    async def report_for(year: int, township: str | None, as_of: date | None, known_at: datetime | None,  # type: ignore[no-untyped-def]
                         area: str | None = None, level: str | None = None):
        for name, value in (("as_of", as_of), ("known_at", known_at)):
            problem = cutoff_problem(name, value) if value is not None else None
            if problem:
                raise HTTPException(422, problem)
        if known_at is not None and known_at.tzinfo is None:
            known_at = known_at.replace(tzinfo=CST)
        try:
            report, _warning = await area_report(
                state["store"], year, area=area, level=level, township=township,
                occurred_before=end_of_day(as_of) if as_of else None, until_recorded=known_at,
            )
        except AreaProblem as exc:
            raise HTTPException(422, str(exc)) from None
        if township is not None and not report.rows:
            raise HTTPException(404, f"no township {township!r} in {year}")
        return report

    @app.get("/api/years", summary="Programme years with figures")
    async def years() -> list[int]:
        query = select(t.township_year.c.programme_year).distinct().order_by(t.township_year.c.programme_year)
        return await state["store"].read(lambda conn: [r[0] for r in conn.execute(query)])

    @app.get("/api/report", summary="Township and county figures of a programme year",
             description=f"Every answer names the log head it was computed from (`log_head` in JSON, the "
                         f"`log_head` column in CSV, a footnote in XLSX) and in the `{HEAD_HEADER}` header.",
             responses={200: {"content": {"application/json": {}, "text/csv": {}, XLSX: {}}}})
    async def report(
        request: Request,
        year: Annotated[int, Query(ge=2000, le=2200, description="programme year (投保年度)")],
        township: Annotated[str | None, Query(max_length=100, description="one township, by name or code")] = None,
        area: Annotated[str | None, Query(max_length=100, description="only this area (province, city, county or township), by name or code")] = None,
        level: Annotated[Literal["province", "city", "county", "township"] | None, Query(
            description="rows of this level, each the exact sum of its townships (default: the level below `area`; townships without it)")] = None,
        as_of: Annotated[date | None, Query(description="only what had happened by the end of this date (CST)")] = None,
        known_at: Annotated[datetime | None, Query(description="what the log knew at this time (recorded_at)")] = None,
        format: Literal["json", "csv", "xlsx"] = "json",
        raw: Annotated[bool, Query(description="with format=csv: the machine form (column names, money in fen, no BOM) "
                                               "instead of the one for Excel (BOM, Chinese headings, yuan)")] = False,
    ) -> Any:
        result = await report_for(year, township, as_of, known_at, await area_for(request, area, township), level)
        headers = {HEAD_HEADER: result.log_head or ""}
        if format == "csv" and raw:
            return PlainTextResponse(result.csv(), media_type="text/csv; charset=utf-8", headers=headers)
        if format == "csv":
            headers["Content-Disposition"] = f'attachment; filename="report-{year}.csv"'
            return Response(csv_for_people(result), media_type="text/csv; charset=utf-8", headers=headers)
        if format == "xlsx":
            book = io.BytesIO()
            write_xlsx(result, book)
            headers["Content-Disposition"] = f'attachment; filename="report-{year}.xlsx"'
            return Response(book.getvalue(), media_type=XLSX, headers=headers)
        return JSONResponse(result.as_json(), headers=headers)

    @app.get("/dashboard", response_class=HTMLResponse, summary="The dashboard page (Chinese)")
    async def dashboard(request: Request, year: Annotated[int | None, Query(ge=2000, le=2200)] = None,
                        area: Annotated[str | None, Query(max_length=100)] = None,
                        level: Annotated[str | None, Query(max_length=20)] = None) -> str:
        known = await years()
        chosen = year or (known[-1] if known else datetime.now(CST).year)
        result = await report_for(chosen, None, None, None, await area_for(request, area or None, None), level or None)  # "": the form's 全部 / 默认
        page = render(result, known, signed_in=SESSION_COOKIE in request.cookies, within=request.state.scope.area)
        return HTMLResponse(page, headers={HEAD_HEADER: result.log_head or ""})

    @app.get("/login", include_in_schema=False)
    async def login_form() -> HTMLResponse:
        if not secured:
            return RedirectResponse("/dashboard", status_code=303)  # type: ignore[return-value]
        return HTMLResponse(login_page())

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not secured:
            return RedirectResponse("/dashboard", status_code=303)
        given = parse_qs((await request.body()).decode("utf-8", "replace")).get("token", [""])[0].strip()
        # The guard has already counted this request against the client's rate limit, like a bearer token.
        if expected is not None and hmac.compare_digest(given.encode(), expected):
            ident = ""
        elif (scope := tokens.scope_of(given.encode())) is not None:
            ident = scope.ident
        else:
            return HTMLResponse(login_page(wrong=True), status_code=401)
        response = RedirectResponse("/dashboard", status_code=303)
        response.set_cookie(SESSION_COOKIE, session_for(int(time.time()) + SESSION_SECONDS, ident), max_age=SESSION_SECONDS,
                            httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
        return response

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        response = RedirectResponse("/login" if secured else "/dashboard", status_code=303)
        response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
        return response

    # For operators (docs/operations.md, "Monitor"): behind the same guard as every route.
    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> PlainTextResponse:
        try:
            await state["store"].read(lambda conn: conn.execute(select(1)).all())
        except Exception:  # noqa: BLE001 - no store yet, or the database away: not ready
            return PlainTextResponse("not ready\n", status_code=503)
        return PlainTextResponse("ok\n")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard")

    return app


def under(tree: dict[str, Any], code: str, ancestor: str) -> bool:
    """Whether area ``code`` is ``ancestor`` or lies under it in ``tree`` (code -> row with parent_code)."""
    seen: set[str] = set()
    while code not in seen:
        if code == ancestor:
            return True
        seen.add(code)
        row = tree.get(code)
        if row is None or row.parent_code is None:
            return False
        code = row.parent_code
    return False
