"""Alembic migrations create every table guanhuai uses, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect

from services.enrollment.areas import load_areas
from shared.events import EventMessage
from shared.events.programme import AreaLevel, AreaRegistered
from guanhuai.schema import all_metadata
from shared.events.store import EventStore
from tests.support.events import target

INFRA = Path(__file__).resolve().parents[2] / "infra"


async def test_alembic_upgrade_head_creates_every_table_and_the_log_works(db_url: str) -> None:
    env = dict(os.environ, GUANHUAI_DB_URL=db_url)
    result = subprocess.run([sys.executable, "-m", "alembic", "-c", str(INFRA / "alembic.ini"), "upgrade", "head"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    store = await EventStore.open(db_url, create=False)
    tables = set(await store.read(lambda conn: inspect(conn).get_table_names()))
    expected = {t.name for m in all_metadata() for t in m.tables.values()} | {"alembic_version"}
    assert expected <= tables
    await store.append("s", [target()])
    assert await store.head_position() == 1
    await store.close()


def _alembic(db_url: str, target: str) -> None:
    env = dict(os.environ, GUANHUAI_DB_URL=db_url)
    result = subprocess.run([sys.executable, "-m", "alembic", "-c", str(INFRA / "alembic.ini"), "upgrade", target],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr


async def test_the_areas_migration_gives_enrollment_the_areas_already_in_the_log(db_url: str) -> None:
    _alembic(db_url, "0004")
    store = await EventStore.open(db_url, create=False)
    township = AreaRegistered(code="chengguan", name="城关", level=AreaLevel.township, parent_code="mingxi")
    await store.append("area-chengguan", [EventMessage.new(township, source="county"),
                                          EventMessage.new(township.model_copy(update={"name": "城关街道"}), source="county")])
    _alembic(db_url, "head")
    areas = await store.read(load_areas)
    await store.close()
    assert areas.township("城关街道") == "chengguan"
