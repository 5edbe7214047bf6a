"""Enrollment's table of registered areas: filled as ``AreaRegistered`` is recorded, read to
resolve the townships and villages that registrations name (shared/domain/areas.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from services.enrollment.decider import area_of
from services.enrollment.tables import areas as table
from shared.domain.areas import Area, Areas
from shared.events.programme import AreaRegistered


async def load_areas(conn: AsyncConnection) -> Areas:
    """Every registered area: a county's hierarchy is a few hundred rows, read once a batch."""
    rows = await conn.execute(select(table.c.code, table.c.name, table.c.level, table.c.parent_code, table.c.aliases))
    return Areas.of(Area(code, name, level, parent, tuple(json.loads(aliases))) for code, name, level, parent, aliases in rows)


async def record_areas(conn: AsyncConnection, registered: Sequence[AreaRegistered]) -> None:
    """Keep the latest registration of each code (in the caller's transaction)."""
    latest = {event.code: area_of(event) for event in registered}
    if not latest:
        return
    await conn.execute(delete(table).where(table.c.code.in_(sorted(latest))))
    await conn.execute(insert(table), [
        {"code": a.code, "name": a.name, "level": a.level, "parent_code": a.parent_code,
         "aliases": json.dumps(list(a.aliases), ensure_ascii=False)}
        for a in latest.values()])
