"""runs of occurrences that sent nothing: status skipped (they were cancelled ones)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 16:00:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

OLD = "status IN ('freezing', 'sending', 'paused', 'completed', 'cancelled')"
NEW = "status IN ('freezing', 'sending', 'paused', 'completed', 'cancelled', 'skipped')"


def _skipped(bind) -> str:
    if bind.dialect.name == "postgresql":
        return "context->>'skipped' IS NOT NULL"
    return "json_extract(context, '$.skipped') IS NOT NULL"


def upgrade():
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_campaign_runs_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_campaign_runs_status"), NEW)
    bind = op.get_bind()
    op.execute(sa.text(f"UPDATE campaign_runs SET status = 'skipped' WHERE status = 'cancelled' AND {_skipped(bind)}"))


def downgrade():
    op.execute(sa.text("UPDATE campaign_runs SET status = 'cancelled' WHERE status = 'skipped'"))
    with op.batch_alter_table("campaign_runs", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_campaign_runs_status"), type_="check")
        batch_op.create_check_constraint(op.f("ck_campaign_runs_status"), OLD)
