"""Shared fixtures: a fresh event log on SQLite and, when the server answers, on PostgreSQL.

PostgreSQL tests use the server at ``GUANHUAI_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432``)
in a database this run creates and drops. When the server does not answer, those tests are
skipped and the run says so in a banner at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from shared.events.database import create_engine
from shared.events.store import EventStore

PG_SERVER = os.environ.get("GUANHUAI_TEST_PG", "postgresql://postgres@127.0.0.1:5432")
_pg_skipped: list[str] = []


def _pg_admin(sql: str) -> None:
    """Run one admin statement on the server (outside a transaction, as CREATE DATABASE must)."""
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", connect_timeout=5, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A database of this test run's own on the PostgreSQL server, dropped at the end."""
    name = f"guanhuai_test_{uuid.uuid4().hex[:12]}"
    try:
        _pg_admin(f'CREATE DATABASE "{name}"')
    except (OSError, asyncio.TimeoutError, Exception) as exc:  # noqa: BLE001 - any failure means "no server"
        reason = f"PostgreSQL at {PG_SERVER} is not available ({type(exc).__name__}: {exc})"
        _pg_skipped.append(reason)
        pytest.skip(reason)
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset_pg(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """An empty database URL: an SQLite file in a temporary folder, or the test PostgreSQL database
    wiped clean."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'log.db'}"
    url = request.getfixturevalue("pg_database")
    _reset_pg(url)
    return url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[EventStore]:
    s = await EventStore.open(db_url)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(scope="session", autouse=True)
def red_team_lines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Writes the red-team probes' lines to ``red-team.txt`` in the base temporary folder."""
    from tests.support.probes import PROBES

    yield
    if PROBES:
        (tmp_path_factory.getbasetemp() / "red-team.txt").write_text("".join(f"{line}\n" for line in PROBES))


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # type: ignore[no-untyped-def]
    from tests.support.probes import PROBES

    if PROBES:
        terminalreporter.section("red team")
        for line in PROBES:
            terminalreporter.write_line(line)
    if _pg_skipped:
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line("PostgreSQL TESTS WERE SKIPPED: " + _pg_skipped[0], red=True, bold=True)
        terminalreporter.write_line("Only SQLite was tested. Start PostgreSQL or set GUANHUAI_TEST_PG.", red=True, bold=True)
        terminalreporter.write_line(bar, red=True, bold=True)
