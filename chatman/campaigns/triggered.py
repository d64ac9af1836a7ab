"""Triggered campaigns: each start (an external event, an inbound message) is its own run for
one contact, unique on what started it, so a repeated event sends nothing twice. A drip that
listens to the same starts enrolls the contact instead."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatman.campaigns import drips
from chatman.campaigns.lifecycle import campaign_step
from chatman.campaigns.models import Campaign, CampaignRun
from chatman.contacts.models import Contact
from chatman.ledger import counters, states
from chatman.ledger.models import Message
from chatman.timeutils import utcnow

# What started a contact's start, as a drip enrollment records it.
SOURCES = {"inbound": "trigger", "event": "event"}


def subscribed(session: Session, event: str) -> list[int]:
    """Running triggered campaigns that send on `event`."""
    return list(
        session.scalars(
            select(Campaign.id).where(
                Campaign.kind.in_(("triggered", "drip")),
                Campaign.status == "running",
                Campaign.trigger_event == event,
            )
        )
    )


def start_for_contact(
    session: Session,
    campaign_id: int,
    contact_id: int,
    occurrence_key: str,
    context: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> tuple[int, int] | None:
    """Start the campaign for one contact: (run id, message id to send), or None when this
    occurrence already started or the campaign is not running. A DND contact's row is
    recorded as skipped, like in a broadcast."""
    now = now or utcnow()
    campaign = session.get(Campaign, campaign_id)
    if campaign is not None and campaign.kind == "drip":  # enrolled: the clock sends its steps
        source = SOURCES.get(occurrence_key.partition(":")[0], "api")
        drips.enroll(session, campaign_id, [contact_id], source, now)
        return None
    if campaign is None or campaign.kind != "triggered" or campaign.status != "running":
        return None
    step = campaign_step(session, campaign_id)
    run = CampaignRun(
        campaign_id=campaign_id,
        occurrence_at=now,
        occurrence_key=occurrence_key[:160],
        context=context or {},
        status="sending",
        frozen_through=0,
        progress_at=now,
    )
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError:
        return None
    dnd = session.scalar(select(Contact.dnd).where(Contact.id == contact_id))
    message_id = session.scalar(
        insert(Message)
        .values(
            campaign_id=campaign_id,
            run_id=run.id,
            step_id=step.id,
            contact_id=contact_id,
            purpose="campaign",
            status=states.SKIPPED if dnd else states.PENDING,
            skip_reason="dnd" if dnd else None,
            attempts=0,
            created_at=now,
        )
        .returning(Message.id)
    )
    metrics = {"targeted": 1} | ({"skipped": 1, "skipped:dnd": 1} if dnd else {})
    counters.apply(session, [(campaign_id, run.id, step.id, metrics)])
    return run.id, message_id
