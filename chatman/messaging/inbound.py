"""Receiving what a customer sent: the contact, the message (once), the 24-hour window, and
which of our campaign messages it answers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatman.contacts.fields import normalise_phone
from chatman.contacts.models import Contact
from chatman.dialects import insert_ignore
from chatman.ledger import counters, series
from chatman.ledger.models import Message
from chatman.messaging.models import InboundMessage
from chatman.timeutils import utcnow

REPLY_WINDOW = timedelta(hours=72)


@dataclass(frozen=True)
class InboundEvent:
    """One inbound message as a webhook parsed it, whatever the provider."""

    provider_sid: str
    phone: str  # as the provider gave it (E.164 for WhatsApp)
    wa_id: str | None = None
    profile_name: str | None = None
    body: str | None = None
    message_type: str | None = None
    button_text: str | None = None
    button_payload: str | None = None
    media_url: str | None = None
    media_type: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    location_label: str | None = None
    replied_sid: str | None = None  # the message of ours it quotes or whose button it taps
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    inbound_id: int
    contact_id: int
    reply_to_id: int | None


def receive(
    session: Session,
    event: InboundEvent,
    now: datetime | None = None,
    reply_window: timedelta = REPLY_WINDOW,
) -> Received | None:
    """Upsert the contact, keep the message and open the window; None for a message already
    received (a provider retry), which must not be handled twice. The caller commits."""
    now = now or utcnow()
    phone = normalise_phone(event.phone, default_region=None, field="From")
    insert_ignore(
        session,
        Contact,
        [
            {
                "phone": phone,
                "wa_id": event.wa_id,
                "name": event.profile_name,
                "attributes": {},
                "dnd": False,
                "created_at": now,
                "updated_at": now,
            }
        ],
        ["phone"],
    )
    contact = session.execute(
        select(Contact.id, Contact.wa_id, Contact.name).where(Contact.phone == phone)
    ).one()
    stored = insert_ignore(
        session,
        InboundMessage,
        [
            {
                "provider_sid": event.provider_sid,
                "contact_id": contact.id,
                "message_type": event.message_type,
                "body": event.body,
                "button_text": event.button_text,
                "button_payload": event.button_payload,
                "media_url": event.media_url,
                "media_type": event.media_type,
                "latitude": event.latitude,
                "longitude": event.longitude,
                "location_label": event.location_label,
                "payload": event.payload,
                "received_at": now,
            }
        ],
        ["provider_sid"],
    )
    if not stored:
        return None
    # A name the marketer gave is kept; WhatsApp's profile name fills a blank one.
    session.execute(
        update(Contact)
        .where(Contact.id == contact.id)
        .values(
            last_inbound_at=now,
            updated_at=now,
            wa_id=contact.wa_id or event.wa_id,
            name=contact.name or event.profile_name,
        )
    )
    reply_to = _answered_message(session, contact.id, event.replied_sid, now - reply_window)
    inbound_id = session.scalar(
        select(InboundMessage.id).where(InboundMessage.provider_sid == event.provider_sid)
    )
    if reply_to is not None:
        session.execute(
            update(InboundMessage).where(InboundMessage.id == inbound_id).values(reply_to_id=reply_to)
        )
        _mark_replied(session, reply_to, now)
    return Received(inbound_id, contact.id, reply_to)


def _answered_message(
    session: Session, contact_id: int, replied_sid: str | None, since: datetime
) -> int | None:
    """The message this answers: the one it quotes or taps a button of, else our latest
    campaign message to this contact within the reply window."""
    if replied_sid:
        quoted = session.scalar(
            select(Message.id).where(Message.provider_sid == replied_sid, Message.contact_id == contact_id)
        )
        if quoted is not None:
            return quoted
    return session.scalar(
        select(Message.id)
        .where(
            Message.contact_id == contact_id,
            Message.campaign_id.is_not(None),
            Message.submitted_at >= since,
        )
        .order_by(Message.submitted_at.desc())
        .limit(1)
    )


def _mark_replied(session: Session, message_id: int, now: datetime) -> None:
    """The first reply to a campaign message counts once, in the same transaction."""
    row = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.replied_at.is_(None))
        .values(replied_at=now)
        .returning(Message.campaign_id, Message.run_id, Message.step_id)
    ).first()
    if row is not None:
        counters.apply(session, [(row.campaign_id, row.run_id, row.step_id, {"replied": 1})])
        series.add(session, [(row.campaign_id, "replied", now)])
