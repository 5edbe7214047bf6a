"""consumer_versions: how many commits changed each consumer's state, so that a batch decided
before the log's write lock is written only if that state still stands.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from alembic import op

from shared.events.inbox import consumer_versions

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database made by 0001 from today's models has the table already.
    consumer_versions.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    consumer_versions.drop(op.get_bind(), checkfirst=True)
