"""Tables of the campaigns package: campaigns, their steps and audience, and runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from chatman.db import Base, Id, Json, UTCDateTime
from chatman.timeutils import utcnow

CAMPAIGN_KINDS = ("one_time", "triggered", "recurring", "drip", "date")
# Kinds whose contacts are enrolled and go step by step on their own time (campaigns.drips).
ENROLLING_KINDS = ("drip", "date")
CAMPAIGN_STATUSES = ("draft", "scheduled", "running", "paused", "completed", "cancelled")


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled')",
            name="status",
        ),
        Index("ix_campaigns_status_send_at", "status", "send_at"),
        Index("ix_campaigns_status_next_occurrence", "status", "next_occurrence_at"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="one_time")
    # triggered campaigns: the external event (POST /api/v1/events) that sends it to a contact
    trigger_event: Mapped[str | None] = mapped_column(String(100), index=True)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    owner: Mapped[str | None] = mapped_column(String(254))
    utm_campaign: Mapped[str | None] = mapped_column(String(100))
    # UTC instant, and the zone the marketer entered it in (shown back in that zone).
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    timezone: Mapped[str | None] = mapped_column(String(64))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # recurring: the rule (campaigns.recurrence, as its as_dict()) and its next occurrence, UTC
    recurrence: Mapped[dict[str, Any] | None] = mapped_column(Json)
    next_occurrence_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # drip: {"exit_on": [...], "goal": {"attribute", "value"}, "reentry_after_days"};
    # date: {"attribute", "offset_days", "at", "repeat"} (campaigns.drips parses both)
    drip: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # When a drip or date campaign was paused (its waits resume by that much later), and when
    # its segments' members were last enrolled (None: enroll them at the next tick).
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    members_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The hours and weekdays its messages may arrive, on the contact's clock
    # (messaging.send_window, as its as_dict()); None: any time.
    send_window: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # {"test_percent": 20, "judge_by": "read", "after_hours": 4}: the variants go to a test
    # group first; after that many hours the best by that rate goes to the rest.
    ab_test: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # Why the clock could not launch it when it fell due (it went back to draft).
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class CampaignSegment(Base):
    """Audience: include segments minus exclude segments (minus DND contacts)."""

    __tablename__ = "campaign_segments"
    __table_args__ = (
        CheckConstraint("mode IN ('include', 'exclude')", name="mode"),
        UniqueConstraint("campaign_id", "segment_id", name="uq_campaign_segments_pair"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"))
    segment_id: Mapped[int] = mapped_column(Id, ForeignKey("segments.id", ondelete="RESTRICT"))
    mode: Mapped[str] = mapped_column(String(8))


class CampaignStep(Base):
    """What is sent: one step for a one-time campaign, several for a drip."""

    __tablename__ = "campaign_steps"
    __table_args__ = (UniqueConstraint("campaign_id", "position", name="uq_campaign_steps_position"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    template_id: Mapped[int | None] = mapped_column(Id, ForeignKey("templates.id", ondelete="RESTRICT"))
    # Free text, allowed only inside a contact's 24-hour window.
    body: Mapped[str | None] = mapped_column(Text)
    delay_s: Mapped[int] = mapped_column(Integer, default=0)
    # drip: how long after the enrollment or the previous step it goes ({"days": 1, "after":
    # "previous", "at": "10:00"}), and what the earlier step's message must have done
    # ({"if": "not_replied", "step": 1}); see campaigns.drips.
    wait: Mapped[dict[str, Any] | None] = mapped_column(Json)
    condition: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # A/B variants of a one-time or recurring campaign's message: the campaign's step is
    # variant A, the others (B to E) are steps of their own with `variant_of` naming it, so
    # each variant's rows and counters are those of its step (see campaigns.variants).
    variant_of: Mapped[int | None] = mapped_column(Id, ForeignKey("campaign_steps.id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(1))
    percent: Mapped[int | None] = mapped_column(Integer)


class CampaignRun(Base):
    """One occurrence of a campaign (or, for a triggered campaign, one start for one contact);
    unique per occurrence key so it runs once."""

    __tablename__ = "campaign_runs"
    __table_args__ = (
        UniqueConstraint("campaign_id", "occurrence_key", name="uq_campaign_runs_occurrence"),
        CheckConstraint(
            "status IN ('freezing', 'sending', 'testing', 'paused', 'completed', 'cancelled', 'skipped')",
            name="status",
        ),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"))
    occurrence_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What makes this run the one run of its occurrence: the scheduled time (ISO), or for a
    # triggered campaign the event or inbound message that started it.
    occurrence_key: Mapped[str] = mapped_column(String(160))
    # Values the run's templates may use ({"event": "order_id"}): an event's properties.
    context: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # skipped: an occurrence that sent nothing, why in context["skipped"] (missed, paused)
    status: Mapped[str] = mapped_column(String(16), default="freezing")
    # Keyset cursor of the audience freeze, so an interrupted freeze resumes where it stopped.
    frozen_through: Mapped[int] = mapped_column(Id, default=0)
    # Last time batches were enqueued or claimed rows: a sending run whose progress stopped
    # (its jobs were lost) is dispatched again by the clock.
    progress_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


ENROLLMENT_STATUSES = ("active", "completed", "exited")


class Enrollment(Base):
    """A contact's way through a drip or date campaign: one row per (campaign, contact), with
    the next step and when it is due. The clock finds due rows by (status, next_due_at) and
    claims them by moving next_due_at on (conditional UPDATE); each step's message is unique
    per (run, step, contact), so a step is never sent twice."""

    __tablename__ = "enrollments"
    __table_args__ = (
        UniqueConstraint("campaign_id", "contact_id", name="uq_enrollments_campaign_contact"),
        Index("ix_enrollments_status_due", "status", "next_due_at"),
        Index("ix_enrollments_contact", "contact_id"),
        CheckConstraint("status IN ('active', 'completed', 'exited')", name="status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    campaign_id: Mapped[int] = mapped_column(Id, ForeignKey("campaigns.id", ondelete="CASCADE"))
    contact_id: Mapped[int] = mapped_column(Id, ForeignKey("contacts.id", ondelete="CASCADE"))
    # The run of this entry (a re-entry is a new run, so its steps can be sent again).
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("campaign_runs.id", ondelete="CASCADE"))
    entry: Mapped[int] = mapped_column(Integer, default=1)
    # segment, trigger, event, api (drip) or date (a date-field campaign)
    source: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Index of the next step in position order; past the last step the enrollment completes.
    next_step: Mapped[int] = mapped_column(Integer, default=0)
    # What the next step's wait counts from: the enrollment, or the previous step.
    waiting_since: Mapped[datetime] = mapped_column(UTCDateTime)
    next_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # date campaigns: the attribute value the due time was computed from (a change reschedules)
    basis: Mapped[str | None] = mapped_column(String(40))
    enrolled_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # replied, opted_out, goal_reached, left_segment, campaign_cancelled, contact_deleted
    exit_reason: Mapped[str | None] = mapped_column(String(32))
