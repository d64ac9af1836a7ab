"""deleting a contact keeps its message rows, anonymous: campaign figures never change after the fact

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 00:30:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_messages_contact_id_contacts", type_="foreignkey")
        batch_op.alter_column(
            "contact_id", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        )
        batch_op.create_foreign_key(
            "fk_messages_contact_id_contacts", "contacts", ["contact_id"], ["id"], ondelete="SET NULL"
        )


def downgrade():
    op.execute("DELETE FROM messages WHERE contact_id IS NULL")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_messages_contact_id_contacts", type_="foreignkey")
        batch_op.alter_column(
            "contact_id", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        )
        batch_op.create_foreign_key(
            "fk_messages_contact_id_contacts", "contacts", ["contact_id"], ["id"], ondelete="CASCADE"
        )
