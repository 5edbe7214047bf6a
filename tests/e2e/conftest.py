from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.pipeline import Pipeline


@pytest.fixture
async def pipeline(tmp_path: Path) -> AsyncIterator[Pipeline]:
    """A fresh pipeline on SQLite with its own nats-server (one per test: tests may kill parts)."""
    running = Pipeline(tmp_path, f"sqlite:///{tmp_path / 'log.db'}")
    try:
        await running.start()
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def pg_pipeline(tmp_path: Path, pg_database: str) -> AsyncIterator[Pipeline]:
    """The same pipeline on the test run's own PostgreSQL database (wiped first)."""
    from tests.conftest import _reset_pg

    _reset_pg(pg_database)
    running = Pipeline(tmp_path, pg_database)
    try:
        await running.start()
        yield running
    finally:
        await running.stop()
