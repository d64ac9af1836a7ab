"""Do-not-disturb: contacts who receive nothing until they opt back in."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from chatman.contacts.models import Contact
from chatman.timeutils import utcnow


def set_dnd(session: Session, contact_ids: Iterable[int], reason: str, now: datetime | None = None) -> int:
    """Make contacts DND (those already DND keep their first reason); returns how many changed."""
    ids = list(contact_ids)
    if not ids:
        return 0
    now = now or utcnow()
    return session.execute(
        update(Contact)
        .where(Contact.id.in_(ids), Contact.dnd.is_(False))
        .values(dnd=True, dnd_reason=reason, dnd_at=now, updated_at=now)
    ).rowcount


def clear_dnd(session: Session, contact_ids: Iterable[int], now: datetime | None = None) -> int:
    ids = list(contact_ids)
    if not ids:
        return 0
    now = now or utcnow()
    return session.execute(
        update(Contact)
        .where(Contact.id.in_(ids), Contact.dnd.is_(True))
        .values(dnd=False, dnd_reason=None, dnd_at=None, updated_at=now)
    ).rowcount
