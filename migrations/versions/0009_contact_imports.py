"""contact imports run by workers: their progress, report, and the uploaded file in chunks

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:10:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
from sqlalchemy.dialects import postgresql
import chatman.db

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "contact_imports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("mapping", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("bytes_read", sa.BigInteger(), nullable=False),
        sa.Column("report", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
        sa.Column("error", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
        sa.Column("created_at", chatman.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("started_at", chatman.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", chatman.db.UTCDateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'done', 'failed')", name=op.f("ck_contact_imports_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_imports")),
    )
    op.create_index("ix_contact_imports_status", "contact_imports", ["status"], unique=False)
    op.create_table(
        "contact_import_chunks",
        sa.Column("import_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("position", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["contact_imports.id"],
            name=op.f("fk_contact_import_chunks_import_id_contact_imports"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("import_id", "position", name=op.f("pk_contact_import_chunks")),
    )


def downgrade():
    op.drop_table("contact_import_chunks")
    op.drop_index("ix_contact_imports_status", table_name="contact_imports")
    op.drop_table("contact_imports")
