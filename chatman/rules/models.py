"""Tables of the rules package: rules on a campaign (or one of its steps), and their firings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chatman.db import Base, Id, Json, UTCDateTime
from chatman.timeutils import utcnow


class Rule(Base):
    __tablename__ = "rules"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"), index=True)
    # Only the messages of this step (a drip's); None: every step's.
    step_id: Mapped[int | None] = mapped_column(Id, ForeignKey("campaign_steps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(default=True)
    # rules.definition's forms: a condition tree, and the actions in the order they run.
    condition: Mapped[dict[str, Any]] = mapped_column(Json)
    actions: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class RuleFiring(Base):
    """A rule that fired for one campaign message (one run, step and contact), with what each
    of its actions did. Unique per (rule, message): a rule fires once per message, however
    often and in whatever order the callbacks about it arrive."""

    __tablename__ = "rule_firings"
    __table_args__ = (
        UniqueConstraint("rule_id", "message_id", name="uq_rule_firings_rule_message"),
        Index("ix_rule_firings_contact", "contact_id"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    rule_id: Mapped[int] = mapped_column(Id, ForeignKey("rules.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(Id, ForeignKey("messages.id", ondelete="CASCADE"))
    contact_id: Mapped[int | None] = mapped_column(Id, ForeignKey("contacts.id", ondelete="SET NULL"))
    # What the message had done when the rule fired: its status, replied, tapped.
    event: Mapped[str] = mapped_column(String(64))
    # done: every action succeeded; failed: at least one did not (see outcomes)
    status: Mapped[str] = mapped_column(String(16))
    # [{"type", "status": "done" | "failed", "reason"}] in the order the actions ran
    outcomes: Mapped[list[dict[str, Any]]] = mapped_column(Json)
    fired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleWait(Base):
    """A waiting condition's deadline for one message ("no reply within 24 h" of its `sent`):
    the clock finds the rows whose time has run out by index and evaluates their messages, so
    no contact is ever polled. Deleted once evaluated."""

    __tablename__ = "rule_waits"
    __table_args__ = (
        UniqueConstraint("rule_id", "message_id", "due_at", name="uq_rule_waits_rule_message_due"),
        Index("ix_rule_waits_due_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    rule_id: Mapped[int] = mapped_column(Id, ForeignKey("rules.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(Id, ForeignKey("messages.id", ondelete="CASCADE"))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A clock that took the row for evaluation holds it until then; after, another may take it.
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
