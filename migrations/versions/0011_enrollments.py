"""drip and date-field campaigns: steps' waits, campaign settings, enrollments

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 10:50:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
from sqlalchemy.dialects import postgresql
import chatman.db

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade():
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("drip", JSON, nullable=True))
        batch_op.add_column(sa.Column("paused_at", chatman.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("members_synced_at", chatman.db.UTCDateTime(timezone=True), nullable=True))
    with op.batch_alter_table("campaign_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wait", JSON, nullable=True))
    op.create_table(
        "enrollments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("contact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("entry", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("next_step", sa.Integer(), nullable=False),
        sa.Column("waiting_since", chatman.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("next_due_at", chatman.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("basis", sa.String(length=40), nullable=True),
        sa.Column("enrolled_at", chatman.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", chatman.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("exit_reason", sa.String(length=32), nullable=True),
        sa.CheckConstraint("status IN ('active', 'completed', 'exited')", name=op.f("ck_enrollments_status")),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name=op.f("fk_enrollments_campaign_id_campaigns"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_enrollments_contact_id_contacts"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["campaign_runs.id"], name=op.f("fk_enrollments_run_id_campaign_runs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrollments")),
        sa.UniqueConstraint("campaign_id", "contact_id", name="uq_enrollments_campaign_contact"),
    )
    op.create_index("ix_enrollments_status_due", "enrollments", ["status", "next_due_at"], unique=False)
    op.create_index("ix_enrollments_contact", "enrollments", ["contact_id"], unique=False)


def downgrade():
    op.drop_index("ix_enrollments_contact", table_name="enrollments")
    op.drop_index("ix_enrollments_status_due", table_name="enrollments")
    op.drop_table("enrollments")
    with op.batch_alter_table("campaign_steps", schema=None) as batch_op:
        batch_op.drop_column("wait")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("members_synced_at")
        batch_op.drop_column("paused_at")
        batch_op.drop_column("drip")
