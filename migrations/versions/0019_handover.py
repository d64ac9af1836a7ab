"""Hand-over: a person pauses the bot for one contact until they release it

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 20:10:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
import chatman.db

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bot_paused_at", chatman.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("bot_paused_by", sa.String(length=200), nullable=True))


def downgrade():
    with op.batch_alter_table("contacts", schema=None) as batch_op:
        batch_op.drop_column("bot_paused_by")
        batch_op.drop_column("bot_paused_at")
