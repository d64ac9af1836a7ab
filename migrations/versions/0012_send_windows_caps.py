"""send windows and marketing caps: campaigns' window, held messages, marketing hand-overs

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 15:40:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
from sqlalchemy.dialects import postgresql
import chatman.db

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade():
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("send_window", JSON, nullable=True))
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hold_until", chatman.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("marketing", sa.Boolean(), nullable=True))
    op.create_index(
        "ix_messages_held",
        "messages",
        ["hold_until"],
        unique=False,
        postgresql_where=sa.text("status = 'held'"),
        sqlite_where=sa.text("status = 'held'"),
    )


def downgrade():
    op.drop_index("ix_messages_held", table_name="messages")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("marketing")
        batch_op.drop_column("hold_until")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("send_window")
