"""Conversations with contacts, as a person in the inbox sees and answers them.

A conversation is a contact who wrote to us; the inbox lists them by their last message,
newest first (keyset pages on `last_inbound_at`, which its index serves). A thread is what
the contact wrote (`InboundMessage`) and everything we sent them (ledger rows, with their
status). A person's reply is a conversation message like a trigger's: free text only inside
the contact's 24-hour window, an approved template outside it; queued here, sent by a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from chatman.contacts.models import Contact
from chatman.errors import Invalid, NotFound
from chatman.ledger.models import Message
from chatman.messaging import policy
from chatman.messaging.models import InboundMessage, Template
from chatman.messaging.outbox import queue_message
from chatman.messaging.rendering import MissingVariable, render, resolve

PAGE = 50
THREAD = 300
MAX_REPLY = 4096
# What a person's reply is in the ledger (beside reply, flow, confirmation, campaign).
PERSON = "person"


@dataclass(frozen=True)
class Conversation:
    contact_id: int
    name: str | None
    phone: str
    last_at: datetime
    last_text: str | None
    last_from: str  # "customer" or "business"
    bot_paused: bool


@dataclass(frozen=True)
class Page:
    items: list[Conversation]
    next: str | None  # the cursor of the next page, or None on the last one


@dataclass(frozen=True)
class Entry:
    """One bubble of a thread."""

    id: str  # "in-<id>" or "out-<id>": unique in the thread, for the page to merge polls
    direction: str  # "in" or "out"
    at: datetime
    text: str | None
    status: str | None = None  # ours: the ledger status
    reason: str | None = None  # ours: why it was skipped or failed
    purpose: str | None = None  # ours: reply, flow, confirmation, campaign, person
    button: str | None = None  # theirs: the button tapped


@dataclass(frozen=True)
class Thread:
    contact_id: int
    name: str | None
    phone: str
    dnd: bool
    bot_paused_at: datetime | None
    bot_paused_by: str | None
    window_open: bool
    window_closes_at: datetime | None
    entries: list[Entry] = field(default_factory=list)


def cursor_of(item: Conversation) -> str:
    return f"{item.last_at.timestamp():.6f}_{item.contact_id}"


def _parse_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        stamp, contact_id = cursor.split("_")
        return datetime.fromtimestamp(float(stamp), UTC), int(contact_id)
    except (ValueError, OverflowError):
        raise Invalid("after", "not a cursor this list gave") from None


def conversations(session: Session, after: str | None = None, limit: int = PAGE) -> Page:
    """Contacts who wrote to us, the latest writer first; `after` is a page's `next`."""
    query = (
        select(Contact.id, Contact.name, Contact.phone, Contact.last_inbound_at, Contact.bot_paused_at)
        .where(Contact.last_inbound_at.is_not(None))
        .order_by(Contact.last_inbound_at.desc(), Contact.id.desc())
        .limit(limit + 1)
    )
    if after:
        at, contact_id = _parse_cursor(after)
        query = query.where(
            or_(
                Contact.last_inbound_at < at,
                and_(Contact.last_inbound_at == at, Contact.id < contact_id),
            )
        )
    rows = session.execute(query).all()
    more, rows = len(rows) > limit, rows[:limit]
    ids = [r.id for r in rows]
    last_in = _latest_inbound(session, ids)
    last_out = _latest_outbound(session, ids)
    items = []
    for r in rows:
        text_in, at_in = last_in.get(r.id, (None, r.last_inbound_at))
        text_out, at_out = last_out.get(r.id, (None, None))
        ours = at_out is not None and at_out > at_in
        items.append(
            Conversation(
                contact_id=r.id,
                name=r.name,
                phone=r.phone,
                last_at=r.last_inbound_at,
                last_text=text_out if ours else text_in,
                last_from="business" if ours else "customer",
                bot_paused=r.bot_paused_at is not None,
            )
        )
    return Page(items, cursor_of(items[-1]) if more and items else None)


def _latest_inbound(session: Session, ids: list[int]) -> dict[int, tuple[str | None, datetime]]:
    if not ids:
        return {}
    latest = (
        select(func.max(InboundMessage.id))
        .where(InboundMessage.contact_id.in_(ids))
        .group_by(InboundMessage.contact_id)
    )
    rows = session.execute(
        select(
            InboundMessage.contact_id,
            InboundMessage.body,
            InboundMessage.button_text,
            InboundMessage.received_at,
        ).where(InboundMessage.id.in_(latest))
    ).all()
    return {r.contact_id: (r.body or r.button_text, r.received_at) for r in rows}


def _latest_outbound(session: Session, ids: list[int]) -> dict[int, tuple[str | None, datetime]]:
    if not ids:
        return {}
    latest = (
        select(func.max(Message.id))
        .where(Message.contact_id.in_(ids), Message.run_id.is_(None))
        .group_by(Message.contact_id)
    )
    rows = session.execute(
        select(Message.contact_id, Message.content, Message.created_at).where(Message.id.in_(latest))
    ).all()
    return {r.contact_id: ((r.content or {}).get("body"), r.created_at) for r in rows}


def thread(session: Session, contact_id: int, now: datetime, limit: int = THREAD) -> Thread:
    """One contact's conversation, oldest first (the latest `limit` of each side)."""
    contact = session.get(Contact, contact_id, populate_existing=True)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found")
    received = session.execute(
        select(
            InboundMessage.id,
            InboundMessage.body,
            InboundMessage.button_text,
            InboundMessage.received_at,
        )
        .where(InboundMessage.contact_id == contact_id)
        .order_by(InboundMessage.id.desc())
        .limit(limit)
    ).all()
    sent = session.execute(
        select(
            Message.id,
            Message.purpose,
            Message.content,
            Message.campaign_id,
            Message.status,
            Message.skip_reason,
            Message.error_code,
            Message.error_message,
            Message.created_at,
        )
        .where(Message.contact_id == contact_id)
        .order_by(Message.id.desc())
        .limit(limit)
    ).all()
    entries = [
        Entry(f"in-{r.id}", "in", r.received_at, r.body or r.button_text, button=r.button_text)
        for r in received
    ]
    for r in sent:
        text = (r.content or {}).get("body")
        if text is None and r.campaign_id is not None:
            text = f"(a message of campaign {r.campaign_id})"
        reason = r.skip_reason or (
            f"{r.error_code}: {r.error_message}" if r.error_code and r.error_message else r.error_code
        )
        entries.append(Entry(f"out-{r.id}", "out", r.created_at, text, r.status, reason, r.purpose))
    entries.sort(key=lambda e: (e.at, e.direction == "out"))
    closes = contact.last_inbound_at + policy.WINDOW if contact.last_inbound_at else None
    return Thread(
        contact_id=contact.id,
        name=contact.name,
        phone=contact.phone,
        dnd=contact.dnd,
        bot_paused_at=contact.bot_paused_at,
        bot_paused_by=contact.bot_paused_by,
        window_open=closes is not None and closes > now,
        window_closes_at=closes,
        entries=entries,
    )


def reply_templates(session: Session) -> list[Template]:
    """The templates a person may answer with outside the window: the approved ones."""
    return list(
        session.scalars(select(Template).where(Template.status == "approved").order_by(Template.name))
    )


def reply(
    session: Session,
    contact_id: int,
    now: datetime,
    body: str | None = None,
    template_id: int | None = None,
) -> int:
    """A person answers the contact: free text `body` inside their 24-hour window, or an
    approved template; returns the queued message id (the caller commits, then enqueues it)."""
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found")
    if contact.dnd:
        raise Invalid("body", "this contact is DND (opted out): nothing can be sent to them")
    if template_id is None:
        body = (body or "").strip()
        if not body:
            raise Invalid("body", "write a reply, or choose a template")
        if len(body) > MAX_REPLY:
            raise Invalid("body", f"at most {MAX_REPLY} characters")
        if not policy.window_open(session, contact_id, now):
            raise Invalid(
                "body",
                "the 24-hour window is closed (the contact last wrote more than 24 hours ago, "
                "or never): free text cannot go; choose an approved template",
            )
        return queue_message(session, contact_id, PERSON, body=body, now=now)
    template = session.get(Template, template_id)
    if template is None:
        raise Invalid("template_id", "no such template")
    if template.status != "approved":
        raise Invalid("template_id", f"the template is {template.status}, not approved")
    try:
        values = resolve(template.variables or {}, contact)
    except MissingVariable as missing:
        raise Invalid("template_id", f"this contact has no value for {missing}") from None
    return queue_message(
        session,
        contact_id,
        PERSON,
        body=render(template.body, values),
        content_sid=template.content_sid,
        content_variables=values if template.content_sid else None,
        template=True,
        now=now,
    )
