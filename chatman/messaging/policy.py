"""The send policy: may this message go to this contact now? One rule for every path.

Asked right before each group of messages leaves, by every send path (broadcast batches,
triggered starts, and the conversation outbox that carries trigger replies, flow prompts and
opt-out confirmations), and counted the same way by the launch pre-flight. It is written once,
as SQL, so that a count over a million contacts and the check of one group are the same rule.

- **DND**: nothing goes to a contact who is DND, except the one message that confirms their
  opt-out.
- **The 24-hour window**: free text goes out only within 24 hours of the contact's last
  message; outside it only an approved template may go (whether the template is approved is
  the campaign's check, made with its other ones).

Send windows (quiet hours) and frequency caps join these rules here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, literal, or_, select
from sqlalchemy.orm import Session

from chatman.contacts.models import Contact

WINDOW = timedelta(hours=24)


def window_closed(now: datetime) -> ColumnElement[bool]:
    """SQL: the contact's 24-hour window is closed at `now` (or was never opened)."""
    return or_(Contact.last_inbound_at.is_(None), Contact.last_inbound_at < now - WINDOW)


def rules(
    now: datetime, free_text: bool, confirmation: bool = False
) -> list[tuple[ColumnElement[bool], str]]:
    """(SQL condition on the contact, the reason it blocks the send), in the order they apply."""
    blocking = [] if confirmation else [(Contact.dnd.is_(True), "dnd")]
    if free_text:
        blocking.append((window_closed(now), "outside_window"))
    return blocking


def blocked(
    session: Session,
    contact_ids: Iterable[int],
    now: datetime,
    free_text: bool,
    confirmation: bool = False,
) -> dict[int, str]:
    """Contacts among `contact_ids` who must not be sent this message now, with why; read
    from the database at this moment (a STOP that just arrived counts, and so does a contact
    deleted meanwhile: `contact_deleted`)."""
    ids = set(contact_ids)
    if not ids:
        return {}
    checks = rules(now, free_text, confirmation)
    reason = case(*checks, else_=literal(None)) if checks else literal(None)
    found = dict(session.execute(select(Contact.id, reason).where(Contact.id.in_(ids))).all())
    gone = dict.fromkeys(ids - set(found), "contact_deleted")
    return gone | {contact: why for contact, why in found.items() if why is not None}


def window_open(session: Session, contact_id: int, now: datetime) -> bool:
    """May free text go to this contact now? (A trigger replies in free text when it may.)"""
    closed = session.scalar(select(window_closed(now)).where(Contact.id == contact_id))
    return closed is not None and not closed
