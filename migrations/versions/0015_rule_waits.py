"""due times of rules' waiting conditions

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 10:30:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
import chatman.db

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "rule_waits",
        sa.Column("id", ID, nullable=False),
        sa.Column("rule_id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("due_at", chatman.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", chatman.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name=op.f("fk_rule_waits_message_id_messages"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rule_id"], ["rules.id"], name=op.f("fk_rule_waits_rule_id_rules"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_waits")),
        sa.UniqueConstraint("rule_id", "message_id", "due_at", name="uq_rule_waits_rule_message_due"),
    )
    op.create_index("ix_rule_waits_due_at", "rule_waits", ["due_at"], unique=False)


def downgrade():
    op.drop_index("ix_rule_waits_due_at", table_name="rule_waits")
    op.drop_table("rule_waits")
