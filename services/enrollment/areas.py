"""Enrollment's table of registered areas: filled as ``AreaRegistered`` is recorded, read to
resolve the townships and villages that registrations name (shared/domain/areas.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import delete, insert, select
from sqlalchemy import Connection

from services.enrollment.decider import area_of
from services.enrollment.tables import areas as table
from shared.domain.areas import Area, Areas
from shared.events.programme import AreaRegistered


def load_areas(conn: Connection) -> Areas:
    """Every registered area: a county's hierarchy is a few hundred rows, read once a batch."""
    rows = conn.execute(select(table.c.code, table.c.name, table.c.level, table.c.parent_code, table.c.aliases))
    return Areas.of(Area(code, name, level, parent, tuple(json.loads(aliases))) for code, name, level, parent, aliases in rows)


def record_areas(conn: Connection, registered: Sequence[AreaRegistered]) -> None:
    """Keep the latest registration of each code (in the caller's transaction)."""
    latest = {event.code: area_of(event) for event in registered}
    if not latest:
        return
    conn.execute(delete(table).where(table.c.code.in_(sorted(latest))))
    conn.execute(insert(table), [
        {"code": a.code, "name": a.name, "level": a.level, "parent_code": a.parent_code,
         "aliases": json.dumps(list(a.aliases), ensure_ascii=False)}
        for a in latest.values()])
