"""Deleting a contact: what the person gave us goes, the anonymous record of what we sent stays.

Gone: the contact (phone, name, attributes), what they wrote (inbound messages), their flow
answers, trigger cooldowns, events, segment memberships, and in the ledger whatever could name
them: the text of conversation messages sent to them, providers' error texts, and the status
callbacks' payloads (which carry the phone number), also of callbacks that arrive later. Not
reached: callbacks still waiting in the Redis inbox (applied within seconds, then stripped)
and any set aside there (`flask statuses set-aside`), kept until someone clears them.
Kept: each message row's campaign, run, step, status, times and error code, with no contact,
so every campaign's figures (and `flask reports verify`) stay what they were.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatman.contacts.crud import delete_contact
from chatman.ledger import sending
from chatman.ledger.models import Message, MessageEvent


def erase_contact(session: Session, contact_id: int) -> None:
    """NotFound when there is no such contact; the caller commits."""
    sids = select(Message.provider_sid).where(
        Message.contact_id == contact_id, Message.provider_sid.is_not(None)
    )
    session.execute(
        update(MessageEvent)
        .where(MessageEvent.provider_sid.in_(sids))
        .values(payload={}, error_message=None)
        .execution_options(synchronize_session=False)
    )
    rows = sending.lock_in_order(session, Message.contact_id == contact_id)
    session.execute(
        update(Message)
        .where(Message.id.in_(rows))
        .values(content=None, error_message=None)
        .execution_options(synchronize_session=False)
    )
    delete_contact(session, contact_id)  # its message rows keep going, with contact_id NULL
