"""crash-safe sending: handed_at on messages, run progress, campaign completion and launch errors

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 09:00:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
import chatman.db

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("handed_at", chatman.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_messages_submitted_at", ["submitted_at"], unique=False)
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("progress_at", chatman.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("completed_at", chatman.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))


def downgrade():
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("last_error")
        batch_op.drop_column("completed_at")
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.drop_column("progress_at")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_submitted_at")
        batch_op.drop_column("handed_at")
