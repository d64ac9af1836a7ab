"""status callbacks: when each was applied (received_at is when the webhook accepted it)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 23:00:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
import chatman.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("applied_at", chatman.db.UTCDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("message_events", schema=None) as batch_op:
        batch_op.drop_column("applied_at")
