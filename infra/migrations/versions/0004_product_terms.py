"""Product terms per year: enrollment's table of each year's terms (enrollment_terms), the medical
terms on claims' cover (claims_policies.deductible_fen, payment_ratio) and the date a person's
cover ended by death (claims_persons.ended_on). All new columns are nullable: policies recorded
before keep none, and claims on them state their own deductible and ratio, as before.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-14
"""

import sqlalchemy as sa
from alembic import op

from services.enrollment.tables import product_terms

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made by 0001 from today's models has all of it already.
    bind = op.get_bind()
    product_terms.create(bind, checkfirst=True)
    inspector = sa.inspect(bind)
    policies = {c["name"] for c in inspector.get_columns("claims_policies")}
    if "deductible_fen" not in policies:
        op.add_column("claims_policies", sa.Column("deductible_fen", sa.BigInteger(), nullable=True))
    if "payment_ratio" not in policies:
        op.add_column("claims_policies", sa.Column("payment_ratio", sa.String(12), nullable=True))
    if "ended_on" not in {c["name"] for c in inspector.get_columns("claims_persons")}:
        op.add_column("claims_persons", sa.Column("ended_on", sa.Date(), nullable=True))


def downgrade() -> None:
    raise NotImplementedError("the product terms and the dates of death are kept")
