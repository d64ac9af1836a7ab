"""Trimming old raw status events. Reports read the counters and rollups, never the events,
so deleting events already applied changes no report; unapplied ones (a sid still unknown)
are kept for the clock to apply."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from chatman.ledger.models import MessageEvent

BATCH = 5000


def oldest_applied(session: Session) -> datetime | None:
    """When the oldest applied event arrived (by id, the order they arrived in): cheap to ask
    often."""
    return session.scalar(
        select(MessageEvent.received_at)
        .where(MessageEvent.applied.is_(True))
        .order_by(MessageEvent.id)
        .limit(1)
    )


def trim_events(session: Session, before: datetime, batch: int = BATCH) -> int:
    """Delete up to `batch` applied events received before `before`, oldest first; returns
    how many. The caller commits, and calls again while it returns `batch`."""
    ids = (
        select(MessageEvent.id)
        .where(MessageEvent.applied.is_(True), MessageEvent.received_at < before)
        .order_by(MessageEvent.id)
        .limit(batch)
    )
    return session.execute(delete(MessageEvent).where(MessageEvent.id.in_(ids.scalar_subquery()))).rowcount
