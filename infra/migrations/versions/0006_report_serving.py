"""report_serving: which version of the reporting read models serves. A rebuild builds the next
version beside the serving one (tables named report_*_next) and switches it in, in one
transaction, counting the version up; the live projection reloads when it changes. No row: the
read models made at start (version 0), as before this revision.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from alembic import op

from services.reporting.storage import serving

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made by 0001 from today's models has the table already.
    serving.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    serving.drop(op.get_bind(), checkfirst=True)
