"""A/B variants: a step's variants (steps of their own), a campaign's test group and winner rule

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 15:00:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


OLD = "status IN ('freezing', 'sending', 'paused', 'completed', 'cancelled', 'skipped')"
NEW = "status IN ('freezing', 'sending', 'testing', 'paused', 'completed', 'cancelled', 'skipped')"


def upgrade():
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_campaign_runs_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_campaign_runs_status"), NEW)
    with op.batch_alter_table("campaign_steps", schema=None) as batch_op:
        batch_op.add_column(sa.Column("variant_of", ID, nullable=True))
        batch_op.add_column(sa.Column("label", sa.String(length=1), nullable=True))
        batch_op.add_column(sa.Column("percent", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_campaign_steps_variant_of_campaign_steps"),
            "campaign_steps",
            ["variant_of"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ab_test", JSON, nullable=True))


def downgrade():
    op.execute(sa.text("UPDATE campaign_runs SET status = 'sending' WHERE status = 'testing'"))
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_campaign_runs_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_campaign_runs_status"), OLD)
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_column("ab_test")
    with op.batch_alter_table("campaign_steps", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_campaign_steps_variant_of_campaign_steps"), type_="foreignkey")
        batch_op.drop_column("percent")
        batch_op.drop_column("label")
        batch_op.drop_column("variant_of")
