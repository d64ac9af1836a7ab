"""recurring campaigns: their rule and next occurrence

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 03:05:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
from sqlalchemy.dialects import postgresql
import chatman.db

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "recurrence",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("next_occurrence_at", chatman.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_campaigns_status_next_occurrence", ["status", "next_occurrence_at"], unique=False)


def downgrade():
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index("ix_campaigns_status_next_occurrence")
        batch_op.drop_column("next_occurrence_at")
        batch_op.drop_column("recurrence")
