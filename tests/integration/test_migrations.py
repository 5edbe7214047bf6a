"""Alembic migrations create every table guanhuai uses, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from shared.events.schema import all_metadata
from shared.events.store import EventStore
from tests.support.events import target

INFRA = Path(__file__).resolve().parents[2] / "infra"


async def test_alembic_upgrade_head_creates_every_table_and_the_log_works(db_url: str) -> None:
    env = dict(os.environ, GUANHUAI_DB_URL=db_url)
    result = subprocess.run([sys.executable, "-m", "alembic", "-c", str(INFRA / "alembic.ini"), "upgrade", "head"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    store = await EventStore.open(db_url, create=False)
    async with store.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
    expected = {t.name for m in all_metadata() for t in m.tables.values()} | {"alembic_version"}
    assert expected <= tables
    await store.append("s", [target()])
    assert await store.head_position() == 1
    await store.close()
