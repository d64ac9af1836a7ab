"""Tables of the ledger: one row per outbound message, every callback, counters.

A campaign message is one row per (run, step, contact). A conversation message (a trigger's
reply, a flow's question, an opt-out confirmation) has no run: it carries its own content
and goes through the same claim/hand/record moves and status callbacks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from chatman.db import Base, Id, Json, UTCDateTime
from chatman.timeutils import utcnow


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("run_id", "step_id", "contact_id", name="uq_messages_recipient"),
        Index("ix_messages_run_status", "run_id", "status"),
        Index("ix_messages_status_claimed_at", "status", "claimed_at"),
        # Unique contacts reached in the last 24 h (the sender's messaging limit).
        Index("ix_messages_submitted_at", "submitted_at"),
        # The latest campaign message to a contact, for reply attribution.
        Index("ix_messages_contact_submitted", "contact_id", "submitted_at"),
        # A campaign's recipients in id order: drill-down pages and the CSV export.
        Index("ix_messages_campaign_id", "campaign_id", "id"),
        # Held rows by when their send window opens (the clock releases them then).
        Index(
            "ix_messages_held",
            "hold_until",
            postgresql_where=text("status = 'held'"),
            sqlite_where=text("status = 'held'"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int | None] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"))
    run_id: Mapped[int | None] = mapped_column(Id, ForeignKey("campaign_runs.id", ondelete="CASCADE"))
    step_id: Mapped[int | None] = mapped_column(Id, ForeignKey("campaign_steps.id", ondelete="CASCADE"))
    # None once the contact was deleted: the row stays, anonymous, so that campaign figures
    # never change after the fact (see messaging.erasure).
    contact_id: Mapped[int | None] = mapped_column(Id, ForeignKey("contacts.id", ondelete="SET NULL"))
    # campaign, or for conversation messages: reply (a trigger's), flow, confirmation (opt-out/in)
    purpose: Mapped[str] = mapped_column(String(16), default="campaign")
    # What a conversation message says: {"body"} or {"content_sid", "content_variables"}.
    content: Mapped[dict[str, Any] | None] = mapped_column(Json)
    trigger_id: Mapped[int | None] = mapped_column(Id, ForeignKey("triggers.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    skip_reason: Mapped[str | None] = mapped_column(String(32))
    provider_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    error_code: Mapped[str | None] = mapped_column(String(16))
    error_message: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Times recovery asked the provider about this row and learnt nothing: bounded, then the
    # row is settled as unconfirmed.
    lookups: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    claim_token: Mapped[str | None] = mapped_column(String(36))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set just before the row goes to the provider. A claimed row with handed_at set and no
    # result may have been sent: recovery asks the provider instead of sending it again.
    handed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # held: when its campaign's send window opens for the contact.
    hold_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Handed over as a marketing message (it counts toward the contact's marketing cap).
    marketing: Mapped[bool | None] = mapped_column()
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The contact's first reply to this message (quoted it, tapped a button, or wrote soon after).
    replied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The contact's first click on a tracked link of this message.
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The contact opted out (STOP) in answer to this message.
    opted_out_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ClaimLease(Base):
    """How long the holder of a claim (a send batch, a conversation send, a recovery) answers
    for its rows. The holder renews it every few seconds while it works; a lease that ran out
    belongs to a holder that died, and recovery takes its rows over within a minute."""

    __tablename__ = "claim_leases"

    token: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))  # host:pid, for the curious
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class MessageEvent(Base):
    """A provider status callback as received, kept for audit and for sids not yet known."""

    __tablename__ = "message_events"
    __table_args__ = (
        UniqueConstraint("provider_sid", "status", name="uq_message_events_sid_status"),
        Index("ix_message_events_unapplied", "applied", "provider_sid"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    provider_sid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(24))
    error_code: Mapped[str | None] = mapped_column(String(16))
    error_message: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    applied: Mapped[bool] = mapped_column(default=False)
    # When the webhook accepted it, and when it was folded onto its message (its sid known).
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CampaignStat(Base):
    """A change of a counter per (run, step, metric), inserted in the transaction of the row
    it counts; a counter is the sum of its rows. No writer ever updates a counter row, so two
    writers never wait on each other (or deadlock) over one: RapidPro's squashable counts. The
    clock squashes each run's rows into one per counter now and then (`counters.squash`).

    Campaign totals are sums over runs. Metrics: targeted, skipped:<reason>, submitted, sent,
    delivered, read, failed, failed:<code>, unconfirmed, replied, held (waiting for its send
    window now).
    """

    __tablename__ = "campaign_stats"
    __table_args__ = (
        Index("ix_campaign_stats_campaign_run", "campaign_id", "run_id"),
        # What the squash looks for: runs with rows not squashed yet.
        Index(
            "ix_campaign_stats_unsquashed",
            "run_id",
            postgresql_where=text("NOT squashed"),
            sqlite_where=text("NOT squashed"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"))
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("campaign_runs.id", ondelete="CASCADE"))
    step_id: Mapped[int] = mapped_column(Id, ForeignKey("campaign_steps.id", ondelete="CASCADE"))
    metric: Mapped[str] = mapped_column(String(48))
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    squashed: Mapped[bool] = mapped_column(default=False)


class CampaignSeries(Base):
    """A change of a time-series count per (campaign, 15-minute bucket in UTC, metric),
    inserted in the transaction of the change it counts, squashed like `CampaignStat`.

    Fifteen minutes divide every UTC offset in use (Nepal's +05:45 among them), so these
    buckets add up exactly to the half-hours, hours, days and months of any viewer's zone.
    Metrics: sent, delivered, read, failed, replied, clicked (when the first of each happened),
    and failed:<code>.
    """

    __tablename__ = "campaign_series"
    __table_args__ = (
        Index("ix_campaign_series_campaign_bucket", "campaign_id", "bucket_at"),
        Index("ix_campaign_series_bucket", "bucket_at"),
        Index(
            "ix_campaign_series_unsquashed",
            "campaign_id",
            postgresql_where=text("NOT squashed"),
            sqlite_where=text("NOT squashed"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"))
    bucket_at: Mapped[datetime] = mapped_column(UTCDateTime)
    metric: Mapped[str] = mapped_column(String(32))
    value: Mapped[int] = mapped_column(BigInteger, default=0)
    squashed: Mapped[bool] = mapped_column(default=False)
