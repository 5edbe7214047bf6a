"""Claims before their policy and unambiguous policy numbers: the claims that wait for their policy
(claims_deferred), the read model's claims_deferred figure (and the county view that sums it), and
the index enrollment looks a new policy number up in.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

from services.claims.tables import deferred
from services.enrollment.tables import insured_households
from services.reporting.tables import county_year_view

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made by 0001 from today's models has all of it already.
    bind = op.get_bind()
    deferred.create(bind, checkfirst=True)
    inspector = sa.inspect(bind)
    if "ix_enrollment_households_policy_number" not in {i["name"] for i in inspector.get_indexes(insured_households.name)}:
        op.create_index("ix_enrollment_households_policy_number", insured_households.name, ["programme_year", "policy_number"])
    if "claims_deferred" not in {c["name"] for c in inspector.get_columns("report_township_year")}:
        op.execute("DROP VIEW IF EXISTS report_county_year")
        op.add_column("report_township_year", sa.Column("claims_deferred", sa.Integer(), nullable=False, server_default="0"))
        op.execute(county_year_view.statement)


def downgrade() -> None:
    raise NotImplementedError("the claims that wait for their policy are kept")
