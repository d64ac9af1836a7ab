"""reports: time-series rollups, tracked links and their clicks, taps and opt-outs per message, a campaign's rows by id

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 14:00:00

"""

import sqlalchemy as sa  # noqa: I001
from alembic import op
import chatman.db

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = chatman.db.UTCDateTime(timezone=True)


def upgrade():
    op.create_table(
        "campaign_series",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("bucket_at", WHEN, nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("squashed", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_campaign_series_campaign_id_campaigns"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_series")),
    )
    op.create_index("ix_campaign_series_campaign_bucket", "campaign_series", ["campaign_id", "bucket_at"])
    op.create_index("ix_campaign_series_bucket", "campaign_series", ["bucket_at"])
    op.create_index(
        "ix_campaign_series_unsquashed",
        "campaign_series",
        ["campaign_id"],
        postgresql_where=sa.text("NOT squashed"),
        sqlite_where=sa.text("NOT squashed"),
    )
    op.create_table(
        "tracked_links",
        sa.Column("id", ID, nullable=False),
        sa.Column("campaign_id", ID, nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("url_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"], ["campaigns.id"], name=op.f("fk_tracked_links_campaign_id_campaigns"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracked_links")),
        sa.UniqueConstraint("campaign_id", "url_hash", name="uq_tracked_links_campaign_url"),
    )
    op.create_table(
        "link_clicks",
        sa.Column("id", ID, nullable=False),
        sa.Column("link_id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("clicked_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["link_id"], ["tracked_links.id"], name=op.f("fk_link_clicks_link_id_tracked_links"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_link_clicks_message_id_messages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_link_clicks")),
    )
    op.create_index("ix_link_clicks_message", "link_clicks", ["message_id", "link_id"])
    op.create_table(
        "message_taps",
        sa.Column("id", ID, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("payload", sa.String(length=256), nullable=False),
        sa.Column("tapped_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"], ["messages.id"], name=op.f("fk_message_taps_message_id_messages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_taps")),
        sa.UniqueConstraint("message_id", "payload", name="uq_message_taps_message_payload"),
    )
    op.create_index("ix_link_clicks_link", "link_clicks", ["link_id"])
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clicked_at", WHEN, nullable=True))
        batch_op.add_column(sa.Column("opted_out_at", WHEN, nullable=True))
    op.create_index("ix_messages_campaign_id", "messages", ["campaign_id", "id"])


def downgrade():
    op.drop_index("ix_messages_campaign_id", table_name="messages")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("opted_out_at")
        batch_op.drop_column("clicked_at")
    op.drop_table("message_taps")
    op.drop_index("ix_link_clicks_link", table_name="link_clicks")
    op.drop_index("ix_link_clicks_message", table_name="link_clicks")
    op.drop_table("link_clicks")
    op.drop_table("tracked_links")
    op.drop_index("ix_campaign_series_unsquashed", table_name="campaign_series")
    op.drop_index("ix_campaign_series_bucket", table_name="campaign_series")
    op.drop_index("ix_campaign_series_campaign_bucket", table_name="campaign_series")
    op.drop_table("campaign_series")
