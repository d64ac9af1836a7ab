"""Tables of the triggers package: inbound triggers, their per-contact cooldowns, events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from chatman.db import Base, Id, Json, UTCDateTime
from chatman.timeutils import utcnow

# "examples": the trigger is described only by example phrases (any trigger may have them).
MATCH_TYPES = ("exact", "keyword", "starts_with", "contains", "regex", "fuzzy", "button", "examples")
ACTIONS = ("reply", "enroll", "flow")


class Trigger(Base):
    """When an inbound message matches, do one thing: reply, enroll in a campaign, start a flow."""

    __tablename__ = "triggers"
    __table_args__ = (
        CheckConstraint(
            "match_type IN ('exact', 'keyword', 'starts_with', 'contains', 'regex', 'fuzzy', 'button',"
            " 'examples')",
            name="match_type",
        ),
        CheckConstraint("action IN ('reply', 'enroll', 'flow')", name="action"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    match_type: Mapped[str] = mapped_column(String(16))
    patterns: Mapped[list[str]] = mapped_column(Json, default=list)
    # fuzzy only: the lowest rapidfuzz score (0-100) that counts as a match
    threshold: Mapped[float | None] = mapped_column(Float)
    # Ways a customer might say it, matched by similarity (triggers.phrases) in any wording.
    examples: Mapped[list[str]] = mapped_column(Json, default=list, server_default="[]")
    # The lowest similarity (0-100) to an example phrase that counts; None: the default.
    example_threshold: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    # Active hours as local wall-clock "HH:MM" in `timezone`; None: always.
    active_from: Mapped[str | None] = mapped_column(String(5))
    active_until: Mapped[str | None] = mapped_column(String(5))
    timezone: Mapped[str | None] = mapped_column(String(64))
    cooldown_s: Mapped[int] = mapped_column(Integer, default=0)
    action: Mapped[str] = mapped_column(String(16))
    reply_body: Mapped[str | None] = mapped_column(Text)
    # Sent instead of reply_body when the contact's 24-hour window is closed.
    reply_template_id: Mapped[int | None] = mapped_column(Id, ForeignKey("templates.id", ondelete="RESTRICT"))
    campaign_id: Mapped[int | None] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="RESTRICT"))
    flow_id: Mapped[int | None] = mapped_column(Id, ForeignKey("flows.id", ondelete="RESTRICT"))
    # Answers what no other trigger matched (patterns and match type are not used).
    is_fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class TriggerFiring(Base):
    """When a trigger last fired for a contact: its cooldown."""

    __tablename__ = "trigger_firings"

    trigger_id: Mapped[int] = mapped_column(
        Id, ForeignKey("triggers.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Event(Base):
    """An external event (POST /api/v1/events), kept once per event id."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(100), index=True)
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    properties: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    # The campaign runs it started, by campaign id.
    runs: Mapped[dict[str, int]] = mapped_column(Json, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
