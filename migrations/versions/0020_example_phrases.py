"""Example phrases on triggers, and triggers described by them alone (match type "examples")

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04 01:30:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
import chatman.db

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

OLD = "match_type IN ('exact', 'keyword', 'starts_with', 'contains', 'regex', 'fuzzy', 'button')"
NEW = "match_type IN ('exact', 'keyword', 'starts_with', 'contains', 'regex', 'fuzzy', 'button', 'examples')"


def upgrade():
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("examples", chatman.db.Json, server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("example_threshold", sa.Float(), nullable=True))
        batch_op.drop_constraint(op.f("ck_triggers_match_type"), type_="check")
        batch_op.create_check_constraint(op.f("ck_triggers_match_type"), NEW)


def downgrade():
    op.execute(sa.text("DELETE FROM triggers WHERE match_type = 'examples'"))
    with op.batch_alter_table("triggers", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_triggers_match_type"), type_="check")
        batch_op.create_check_constraint(op.f("ck_triggers_match_type"), OLD)
        batch_op.drop_column("example_threshold")
        batch_op.drop_column("examples")
