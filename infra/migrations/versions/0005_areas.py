"""Areas by code or registered name: enrollment's table of registered areas (enrollment_areas),
filled from the AreaRegistered events already in the log (the latest of each code), so that the
households that follow are resolved against the areas registered before the upgrade; and the
aliases of the reporting read model's areas (report_areas.aliases; none before: aliases are new).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-14
"""

import json

import sqlalchemy as sa
from alembic import op

from services.enrollment.tables import areas
from shared.events.tables import events

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    if "aliases" not in {c["name"] for c in inspector.get_columns("report_areas")}:
        op.add_column("report_areas", sa.Column("aliases", sa.Text(), nullable=False, server_default="[]"))
    areas.create(bind, checkfirst=True)  # (made already by 0001 from today's models, or by a service's start)
    if bind.execute(sa.select(sa.func.count()).select_from(areas)).scalar():
        return  # filled by enrollment since
    latest: dict[str, dict] = {}
    query = sa.select(events.c.payload).where(events.c.event_type == "AreaRegistered").order_by(events.c.position)
    for (payload,) in bind.execute(query):
        area = json.loads(payload)
        latest[area["code"]] = {"code": area["code"], "name": area["name"], "level": area["level"],
                                "parent_code": area.get("parent_code"),
                                "aliases": json.dumps(area.get("aliases", []), ensure_ascii=False)}
    if latest:
        bind.execute(sa.insert(areas), list(latest.values()))


def downgrade() -> None:
    raise NotImplementedError("the registered areas are kept")
