"""External events (POST /api/v1/events): each starts the triggered campaigns subscribed to
it for one contact, once per event id."""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatman.campaigns import triggered
from chatman.contacts.crud import create_contact, find_by_phone, get_contact
from chatman.contacts.fields import normalise_phone
from chatman.dialects import insert_ignore
from chatman.errors import Invalid, NotFound
from chatman.timeutils import utcnow
from chatman.triggers.models import Event

EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}\Z")
MAX_PROPERTIES_BYTES = 16_384


@dataclass
class EventOutcome:
    event_id: str
    contact_id: int
    duplicate: bool
    # campaign id -> (run id, message id to send) for the campaigns it started now
    started: dict[int, tuple[int, int]] = field(default_factory=dict)
    # the running triggered campaigns subscribed to the event (started or not, e.g. DND)
    listening: list[int] = field(default_factory=list)


def record_event(
    session: Session,
    name: str,
    contact: Mapping[str, Any],
    properties: Mapping[str, Any] | None = None,
    event_id: str | None = None,
    default_region: str | None = None,
    now: datetime | None = None,
) -> EventOutcome:
    """Keep the event and start every running triggered campaign subscribed to `name` for
    the contact. An event id seen before starts nothing again."""
    now = now or utcnow()
    if not EVENT_NAME.match(name or ""):
        raise Invalid("event", "an event name: letters, digits and _ . : - (e.g. order_created)")
    properties = dict(properties or {})
    if len(repr(properties)) > MAX_PROPERTIES_BYTES:
        raise Invalid("properties", f"at most {MAX_PROPERTIES_BYTES} bytes")
    contact_id = _contact(session, contact, default_region)
    event_id = event_id or uuid.uuid4().hex
    stored = insert_ignore(
        session,
        Event,
        [
            {
                "event_id": event_id,
                "name": name,
                "contact_id": contact_id,
                "properties": properties,
                "runs": {},
                "received_at": now,
            }
        ],
        ["event_id"],
    )
    if not stored:
        earlier = session.scalar(select(Event).where(Event.event_id == event_id))
        return EventOutcome(event_id, earlier.contact_id, duplicate=True)
    outcome = EventOutcome(event_id, contact_id, duplicate=False)
    outcome.listening = list(triggered.subscribed(session, name))
    for campaign_id in outcome.listening:
        started = triggered.start_for_contact(
            session, campaign_id, contact_id, f"event:{event_id}", properties, now
        )
        if started is not None:
            outcome.started[campaign_id] = started
    event = session.scalar(select(Event).where(Event.event_id == event_id))
    event.runs = {str(c): run for c, (run, _) in outcome.started.items()}
    return outcome


def _contact(session: Session, contact: Mapping[str, Any], default_region: str | None) -> int:
    """By id, or by phone (a new phone becomes a contact, as the event says it exists)."""
    if contact.get("id") is not None:
        try:
            return get_contact(session, int(contact["id"])).id
        except NotFound:
            raise Invalid("contact.id", f"no contact {contact['id']}") from None
    if not contact.get("phone"):
        raise Invalid("contact", "give the contact's phone or id")
    phone = normalise_phone(str(contact["phone"]), default_region, field="contact.phone")
    found = find_by_phone(session, phone)
    return found.id if found is not None else create_contact(session, {"phone": phone}, default_region).id
