"""Conversation messages (a trigger's reply, a flow's question, an opt-out confirmation): one
ledger row each, queued in the transaction that decided to send it and sent by a job, with
the same claim, lease, hand-over, send policy and status moves as a campaign message.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from chatman.contacts.models import Contact
from chatman.ledger import sending, states
from chatman.ledger.models import Message
from chatman.messaging import policy
from chatman.messaging.delivery import AMBIGUOUS_HOLD, Answers, record_answers
from chatman.messaging.providers import OutboundMessage, Provider, send_safely, status_callback_for
from chatman.timeutils import utcnow

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
    skipped: str | None = None,
) -> int:
    """A pending conversation message: free text `body` (inside the 24-hour window only), or
    an approved template (`template`; by `content_sid` for Twilio, whose rendered text is
    `body`), which may also go outside it. With `skipped`, the row records a message that
    could not be sent, and why, instead."""
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
            status=states.SKIPPED if skipped else states.PENDING,
            skip_reason=skipped,
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
    with sending.keep_lease(session.get_bind(), token) as lease:
        return _send(session, token, lease, message_id, provider, status_callback)


def _send(
    session: Session,
    token: str,
    lease: sending.Lease,
    message_id: int,
    provider: Provider,
    status_callback: str | None,
) -> Answers | str:
    row = session.execute(
        select(
            Message.id, Message.contact_id, Message.attempts, Message.purpose, Message.content, Contact.phone
        )
        .outerjoin(Contact, Contact.id == Message.contact_id)
        .where(Message.id == message_id)
    ).one()
    claimed = sending.ClaimedRow(row.id, None, None, None, row.contact_id, row.attempts)
    content = row.content or {}
    now = utcnow()
    if row.phone is None:
        reason = "contact_deleted"
    else:
        reason = policy.blocked(
            session,
            [row.contact_id],
            now,
            free_text=not content.get("template"),
            confirmation=row.purpose == CONFIRMATION,
        ).get(row.contact_id)
    if reason:
        sending.skip(session, token, [claimed], reason)
        sending.end_lease(session, token)
        session.commit()
        return reason
    if not sending.hand(session, token, [message_id], now):  # no longer ours (tied, taken over)
        sending.end_lease(session, token)
        session.commit()
        return "taken"
    session.commit()
    answer = send_safely(
        provider,
        OutboundMessage(
            to=row.phone,
            body=None if content.get("content_sid") else content.get("body"),
            content_sid=content.get("content_sid"),
            content_variables=content.get("content_variables"),
            status_callback=status_callback_for(status_callback, message_id),
        ),
        lease,
    )
    recorded = record_answers(session, token, [(claimed, answer)])
    # No answer: the provider settles it meanwhile; then recovery asks.
    sending.end_lease(session, token, hold_until=utcnow() + AMBIGUOUS_HOLD if recorded.ambiguous else None)
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
