from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, String, Text, UniqueConstraint
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
