"""Tables of the messaging package: templates and inbound messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chatman.db import Base, Id, Json, UTCDateTime
from chatman.timeutils import utcnow

TEMPLATE_CATEGORIES = ("marketing", "utility", "authentication")
TEMPLATE_STATUSES = ("draft", "pending", "approved", "rejected")


class Template(Base):
    """A WhatsApp message template; only approved ones may open a conversation."""

    __tablename__ = "templates"
    __table_args__ = (
        UniqueConstraint("name", "language", name="uq_templates_name_language"),
        CheckConstraint("category IN ('marketing', 'utility', 'authentication')", name="category"),
        CheckConstraint("status IN ('draft', 'pending', 'approved', 'rejected')", name="status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    language: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text)
    # Twilio Content API id (HX...), sent as ContentSid with ContentVariables.
    content_sid: Mapped[str | None] = mapped_column(String(64))
    buttons: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    # placeholder -> where its value comes from: {"field": "name"}, {"attribute": "city"}
    # or {"value": "fixed text"}.
    variables: Mapped[dict[str, dict[str, Any]]] = mapped_column(Json, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class InboundMessage(Base):
    """What a customer sent us, once per provider sid."""

    __tablename__ = "inbound_messages"
    __table_args__ = (Index("ix_inbound_messages_contact_received", "contact_id", "received_at"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    provider_sid: Mapped[str] = mapped_column(String(64), unique=True)
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    message_type: Mapped[str | None] = mapped_column(String(24))
    body: Mapped[str | None] = mapped_column(Text)
    button_text: Mapped[str | None] = mapped_column(String(256))
    button_payload: Mapped[str | None] = mapped_column(String(256))
    media_url: Mapped[str | None] = mapped_column(Text)
    media_type: Mapped[str | None] = mapped_column(String(128))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    location_label: Mapped[str | None] = mapped_column(Text)
    # The campaign message this answers (quoted, a button of it, or the latest within the window).
    reply_to_id: Mapped[int | None] = mapped_column(Id, ForeignKey("messages.id", ondelete="SET NULL"))
    # What handled it: opt_out, opt_in, opt_out_prompt (it read like an opt-out: "Reply STOP"
    # was answered), opt_in_prompt (it read like an opt-in: "Reply START"), dnd (ignored),
    # person (hand-over: the bot is paused), flow, trigger, fallback, or None (nothing).
    handled_by: Mapped[str | None] = mapped_column(String(16))
    trigger_id: Mapped[int | None] = mapped_column(Id, ForeignKey("triggers.id", ondelete="SET NULL"))
    payload: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TrackedLink(Base):
    """A link in a campaign's messages, sent as a short tracked link (`/r/<token>`). The
    redirect goes only to this stored address: a token names a row, never a target."""

    __tablename__ = "tracked_links"
    __table_args__ = (UniqueConstraint("campaign_id", "url_hash", name="uq_tracked_links_campaign_url"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(Text)
    # sha256 of the url: an index on a hash, not on text of any length.
    url_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MessageTap(Base):
    """A button of a campaign message that its contact tapped, once per payload: no contact
    data, so it stays (and its count recounts) when the contact is erased."""

    __tablename__ = "message_taps"
    __table_args__ = (UniqueConstraint("message_id", "payload", name="uq_message_taps_message_payload"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    message_id: Mapped[int] = mapped_column(Id, ForeignKey("messages.id", ondelete="CASCADE"))
    payload: Mapped[str] = mapped_column(String(256))
    tapped_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class LinkClick(Base):
    """One follow of a tracked link by the contact it was sent to."""

    __tablename__ = "link_clicks"
    __table_args__ = (
        Index("ix_link_clicks_message", "message_id", "link_id"),
        Index("ix_link_clicks_link", "link_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    link_id: Mapped[int] = mapped_column(Id, ForeignKey("tracked_links.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(Id, ForeignKey("messages.id", ondelete="CASCADE"))
    clicked_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
