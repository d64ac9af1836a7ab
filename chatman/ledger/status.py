"""Applying provider status callbacks to the ledger: kept, deduplicated, forward only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatman.dialects import insert_ignore
from chatman.ledger import counters, states
from chatman.ledger.models import Message, MessageEvent
from chatman.timeutils import utcnow

TIMESTAMP = {
    states.SENT: "sent_at",
    states.DELIVERED: "delivered_at",
    states.READ: "read_at",
    states.FAILED: "failed_at",
}


@dataclass(frozen=True)
class StatusUpdate:
    """A provider's report on one message, as a webhook parsed it."""

    provider_sid: str
    status: str
    error_code: str | None = None
    error_message: str | None = None
    payload: dict[str, Any] | None = None


def record(session: Session, event: StatusUpdate, now: datetime | None = None) -> str:
    """Keep `event` and apply it; returns duplicate, applied, unchanged or waiting (unknown sid)."""
    now = now or utcnow()
    stored = insert_ignore(
        session,
        MessageEvent,
        [
            {
                "provider_sid": event.provider_sid,
                "status": event.status,
                "error_code": event.error_code,
                "error_message": event.error_message,
                "payload": event.payload or {},
                "applied": False,
                "received_at": now,
            }
        ],
        ["provider_sid", "status"],
    )
    if not stored:
        return "duplicate"
    outcome = _apply(session, event.provider_sid, event.status, event.error_code, event.error_message, now)
    if outcome != "waiting":
        session.execute(
            update(MessageEvent)
            .where(MessageEvent.provider_sid == event.provider_sid, MessageEvent.status == event.status)
            .values(applied=True)
        )
    return outcome


def apply_waiting(session: Session, provider_sid: str, now: datetime | None = None) -> int:
    """Apply the events that arrived before `provider_sid` was known (call once it is)."""
    now = now or utcnow()
    waiting = list(
        session.scalars(
            select(MessageEvent).where(
                MessageEvent.provider_sid == provider_sid, MessageEvent.applied.is_(False)
            )
        )
    )
    for event in waiting:
        _apply(session, provider_sid, event.status, event.error_code, event.error_message, now)
        event.applied = True
    return len(waiting)


def _apply(
    session: Session, sid: str, provider_status: str, code: str | None, text: str | None, now: datetime
) -> str:
    new = states.PROVIDER_STATUS.get(provider_status)
    if new is None:
        return "unchanged"
    while True:  # compare-and-set: retry if a concurrent update moved the row first
        row = session.execute(
            select(
                Message.id,
                Message.campaign_id,
                Message.run_id,
                Message.step_id,
                Message.status,
                Message.skip_reason,
                Message.error_code,
                Message.submitted_at,
            ).where(Message.provider_sid == sid)
        ).first()
        if row is None:
            return "waiting"
        if not states.moves_forward(row.status, new):
            return "unchanged"
        values: dict[str, Any] = {"status": new, TIMESTAMP[new]: now}
        if new == states.FAILED:
            values |= {"error_code": code, "error_message": text}
        else:
            values |= {"error_code": None, "error_message": None}
        moved = session.execute(
            update(Message).where(Message.id == row.id, Message.status == row.status).values(**values)
        ).rowcount
        if moved:
            submitted = row.submitted_at is not None
            before = counters.metrics_of(row.status, row.skip_reason, row.error_code, submitted)
            after = counters.metrics_of(new, row.skip_reason, values["error_code"], submitted)
            counters.apply(
                session, [(row.campaign_id, row.run_id, row.step_id, counters.delta(before, after))]
            )
            return "applied"
