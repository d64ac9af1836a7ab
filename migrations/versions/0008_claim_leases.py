"""claim leases (a dead worker's claims recovered within a minute) and bounded provider lookups

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:00:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
import chatman.db

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "claim_leases",
        sa.Column("token", sa.String(length=36), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("expires_at", chatman.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_claim_leases")),
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lookups", sa.Integer(), nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("lookups")
    op.drop_table("claim_leases")
