"""post-campaign rules and their firings

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 16:40:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
from sqlalchemy.dialects import postgresql
import chatman.db

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade():
    op.create_table(
        "rules",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("step_id", ID, nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("condition", JSON, nullable=False),
        sa.Column("actions", JSON, nullable=False),
        sa.Column("created_at", chatman.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", chatman.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], name=op.f("fk_rules_campaign_id_campaigns"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["step_id"], ["campaign_steps.id"], name=op.f("fk_rules_step_id_campaign_steps"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rules")),
    )
    op.create_index(op.f("ix_rules_campaign_id"), "rules", ["campaign_id"], unique=False)
    op.create_table(
        "rule_firings",
        sa.Column("id", ID, nullable=False),
        sa.Column("rule_id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("contact_id", ID, nullable=True),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcomes", JSON, nullable=False),
        sa.Column("fired_at", chatman.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], name=op.f("fk_rule_firings_contact_id_contacts"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"], name=op.f("fk_rule_firings_message_id_messages"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["rule_id"], ["rules.id"], name=op.f("fk_rule_firings_rule_id_rules"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_firings")),
        sa.UniqueConstraint("rule_id", "message_id", name="uq_rule_firings_rule_message"),
    )
    op.create_index("ix_rule_firings_contact", "rule_firings", ["contact_id"], unique=False)


def downgrade():
    op.drop_index("ix_rule_firings_contact", table_name="rule_firings")
    op.drop_table("rule_firings")
    op.drop_index(op.f("ix_rules_campaign_id"), table_name="rules")
    op.drop_table("rules")
