"""counters as inserted deltas, squashed by the clock: no unique counter row to contend on

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 23:30:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("campaign_stats", schema=None) as batch_op:
        batch_op.add_column(sa.Column("squashed", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch_op.drop_constraint("uq_campaign_stats_key", type_="unique")
        batch_op.create_index("ix_campaign_stats_campaign_run", ["campaign_id", "run_id"], unique=False)
    # Rows written from now on are deltas (squashed false); the existing ones are one per key.
    with op.batch_alter_table("campaign_stats", schema=None) as batch_op:
        batch_op.alter_column("squashed", server_default=None)
    op.create_index(
        "ix_campaign_stats_unsquashed",
        "campaign_stats",
        ["run_id"],
        unique=False,
        postgresql_where=sa.text("NOT squashed"),
        sqlite_where=sa.text("NOT squashed"),
    )


def downgrade():
    # Back to one row per key: sum the deltas first.
    op.execute(
        "CREATE TEMPORARY TABLE _stats AS SELECT min(id) AS id, campaign_id, run_id, step_id, metric, "
        "sum(value) AS value FROM campaign_stats GROUP BY campaign_id, run_id, step_id, metric"
    )
    op.execute("DELETE FROM campaign_stats")
    op.execute(
        "INSERT INTO campaign_stats (id, campaign_id, run_id, step_id, metric, value, squashed) "
        "SELECT id, campaign_id, run_id, step_id, metric, value, true FROM _stats"
    )
    op.execute("DROP TABLE _stats")
    op.drop_index("ix_campaign_stats_unsquashed", table_name="campaign_stats")
    with op.batch_alter_table("campaign_stats", schema=None) as batch_op:
        batch_op.drop_index("ix_campaign_stats_campaign_run")
        batch_op.create_unique_constraint("uq_campaign_stats_key", ["run_id", "step_id", "metric"])
        batch_op.drop_column("squashed")
