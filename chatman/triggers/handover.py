"""Hand-over: a person takes a conversation from the bot, until they release it.

While a contact's bot is paused, what they write is kept and shown in the inbox, but no
trigger, flow or triggered campaign answers it (see triggers.inbound); opt-out and opt-in
words still work, so STOP always stops. Taking over ends a flow the contact was in: a
person is answering now, and the flow's timeout message must not interrupt them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from chatman.contacts.models import Contact
from chatman.errors import Invalid, NotFound
from chatman.flows import engine as flows

MAX_BY = 200


def hand_over(session: Session, contact_id: int, by: str, now: datetime) -> bool:
    """Pause the bot for this contact; False when it was paused already (kept as it was)."""
    by = (by or "").strip()
    if not by or len(by) > MAX_BY:
        raise Invalid("by", f"who takes over: 1 to {MAX_BY} characters")
    if session.get(Contact, contact_id) is None:
        raise NotFound(f"contact {contact_id} not found")
    paused = session.execute(
        update(Contact)
        .where(Contact.id == contact_id, Contact.bot_paused_at.is_(None))
        .values(bot_paused_at=now, bot_paused_by=by)
    ).rowcount
    if paused:
        run = flows.active_session(session, contact_id)
        if run is not None:
            flows.end(session, run, "interrupted", now)
    return bool(paused)


def release(session: Session, contact_id: int) -> bool:
    """Give the conversation back to the bot; False when it was not paused."""
    if session.get(Contact, contact_id) is None:
        raise NotFound(f"contact {contact_id} not found")
    return bool(
        session.execute(
            update(Contact)
            .where(Contact.id == contact_id, Contact.bot_paused_at.is_not(None))
            .values(bot_paused_at=None, bot_paused_by=None)
        ).rowcount
    )
