"""Baseline: every table as of the first release (the log with its append-only guards, the
inbox, the services' own tables and the reporting read models).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from alembic import op

from guanhuai.schema import all_metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for metadata in all_metadata():
        metadata.create_all(bind, checkfirst=True)


def downgrade() -> None:
    raise NotImplementedError("the event log is never dropped by a migration")
