"""Conversation messages (a trigger's reply, a flow's question, an opt-out confirmation): one
ledger row each, queued in the transaction that decided to send it and sent by a job, with
the same claim, hand-over and status moves as a campaign message.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from chatman.contacts.models import Contact
from chatman.ledger import sending, states
from chatman.ledger.models import Message
from chatman.messaging.delivery import Answers, record_answers
from chatman.messaging.providers import OutboundMessage, Provider
from chatman.timeutils import utcnow

WINDOW = timedelta(hours=24)
# Sent even to a contact who just became DND: the one message that confirms the opt-out.
CONFIRMATION = "confirmation"


def queue_message(
    session: Session,
    contact_id: int,
    purpose: str,
    body: str | None = None,
    content_sid: str | None = None,
    content_variables: dict[str, str] | None = None,
    template: bool = False,
    trigger_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """A pending conversation message: free text `body` (inside the 24-hour window only), or
    an approved template (`template`; by `content_sid` for Twilio, whose rendered text is
    `body`), which may also go outside it."""
    content: dict[str, Any] = {"body": body, "template": template or content_sid is not None}
    if content_sid is not None:
        content |= {"content_sid": content_sid, "content_variables": content_variables or {}}
    return session.scalar(
        insert(Message)
        .values(
            contact_id=contact_id,
            purpose=purpose,
            content=content,
            trigger_id=trigger_id,
            status=states.PENDING,
            attempts=0,
            created_at=now or utcnow(),
        )
        .returning(Message.id)
    )


def send_queued(
    session: Session,
    message_id: int,
    provider: Provider,
    status_callback: str | None = None,
    now: datetime | None = None,
) -> Answers | str:
    """Send one queued conversation message; returns the provider's recorded answer, or why
    nothing was sent ("taken": another job has it; or a skip reason)."""
    now = now or utcnow()
    token = str(uuid.uuid4())
    if not sending.claim(session, [message_id], token, now):
        session.commit()
        return "taken"
    session.commit()
    row = session.execute(
        select(Message.id, Message.contact_id, Message.attempts, Message.purpose, Message.content, Contact)
        .outerjoin(Contact, Contact.id == Message.contact_id)
        .where(Message.id == message_id)
    ).one()
    claimed = sending.ClaimedRow(row.id, None, None, None, row.contact_id, row.attempts)
    contact, content = row.Contact, row.content or {}
    reason = None
    if contact is None:
        reason = "contact_deleted"
    elif contact.dnd and row.purpose != CONFIRMATION:
        reason = "dnd"
    elif not content.get("template") and (
        contact.last_inbound_at is None or now - contact.last_inbound_at > WINDOW
    ):
        reason = "outside_window"
    if reason:
        sending.skip(session, token, [claimed], reason)
        session.commit()
        return reason
    sending.hand(session, token, [message_id], now)
    session.commit()
    answer = provider.send(
        OutboundMessage(
            to=contact.phone,
            body=None if content.get("content_sid") else content.get("body"),
            content_sid=content.get("content_sid"),
            content_variables=content.get("content_variables"),
            status_callback=status_callback,
        )
    )
    recorded = record_answers(session, token, [(claimed, answer)])
    session.commit()
    return recorded


def stale_pending(session: Session, created_before: datetime, limit: int = 500) -> list[int]:
    """Conversation messages still pending long after they were queued: their job was lost."""
    return list(
        session.scalars(
            select(Message.id)
            .where(
                Message.run_id.is_(None),
                Message.status == states.PENDING,
                Message.created_at < created_before,
            )
            .order_by(Message.id)
            .limit(limit)
        )
    )
