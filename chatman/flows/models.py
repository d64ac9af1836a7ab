"""Tables of the flows package: conversation flows and each contact's place in one."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from chatman.db import Base, Id, Json, UTCDateTime
from chatman.timeutils import utcnow

SESSION_STATUSES = ("active", "completed", "timed_out", "interrupted", "stopped")


class Flow(Base):
    """An ordered list of steps (see flows.definition for their shape)."""

    __tablename__ = "flows"
    __table_args__ = (CheckConstraint("on_trigger IN ('interrupt', 'ignore')", name="on_trigger"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    steps: Mapped[list[dict[str, Any]]] = mapped_column(Json, default=list)
    # A contact who does not answer for this long leaves the flow (timed_out).
    timeout_s: Mapped[int] = mapped_column(Integer, default=24 * 3600)
    timeout_message: Mapped[str | None] = mapped_column(Text)
    # While a contact is in this flow, a message that matches a trigger either interrupts the
    # flow (the trigger runs) or is taken as the answer to the flow's question.
    on_trigger: Mapped[str] = mapped_column(String(10), default="ignore")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class FlowSession(Base):
    """A contact's way through a flow. At most one active session per contact."""

    __tablename__ = "flow_sessions"
    __table_args__ = (
        CheckConstraint(
            "status IN ('active', 'completed', 'timed_out', 'interrupted', 'stopped')", name="status"
        ),
        Index(
            "uq_flow_sessions_active_contact",
            "contact_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_flow_sessions_status_deadline", "status", "deadline_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    flow_id: Mapped[int] = mapped_column(Id, ForeignKey("flows.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    answers: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    reprompts: Mapped[int] = mapped_column(Integer, default=0)  # answers that did not fit, re-asked
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    deadline_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
