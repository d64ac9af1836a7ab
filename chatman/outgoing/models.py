"""Tables of outgoing webhooks: endpoints (a CRM's URL and its signing secret), deliveries
(one event for one endpoint: both its schedule and its audit) and each attempt made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from chatman.db import Base, Id, Json, UTCDateTime
from chatman.timeutils import utcnow

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


class WebhookEndpoint(Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    enabled: Mapped[bool] = mapped_column(default=True)
    # Why and when it stopped (a 410 Gone answer, or a marketer), until it is enabled again.
    disabled_reason: Mapped[str | None] = mapped_column(String(500))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # "whsec_" + base64 (Standard Webhooks). Kept as is: every request is signed with it.
    secret: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One event for one endpoint, sent until the endpoint accepts it or we give up. Its
    webhook_id is fixed when it is queued and sent on every attempt, so the receiver can tell
    a retry from a new event."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", name="uq_webhook_deliveries_webhook_id"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
        # The clock's question, "which pending deliveries are due?", read from an index that
        # holds only the pending ones.
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(Id, ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    webhook_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    # pending -> delivered, or failed (given up, refused, or its endpoint disabled)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempt_count: Mapped[int] = mapped_column(default=0)
    # When the next attempt is due; while one is under way, when its claim runs out (a worker
    # that died mid-attempt leaves the row due again then). None once settled.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Why it failed, or what the last failed attempt got while it is still retried.
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Read only (the database deletes them with the delivery), in the order they were made.
    attempts: Mapped[list[WebhookAttempt]] = relationship(
        order_by="WebhookAttempt.id", viewonly=True, lazy="select"
    )


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        Id, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column()  # 1 for the first
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # None when no answer came (timeout, connection refused, address refused).
    status_code: Mapped[int | None] = mapped_column()
    duration_ms: Mapped[int] = mapped_column()
    error: Mapped[str | None] = mapped_column(String(500))
