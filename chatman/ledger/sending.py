"""A send's moves through the ledger: claim rows, hand them over, record what happened.

pending -> claimed (a batch owns the row under its token) -> handed (`handed_at`: the row is
going to the provider now) -> submitted or failed, or back to pending (a retryable error,
a pause, a stale claim that never reached the provider). Every move is conditional on the
batch's token, so a batch whose claim the clock recovered cannot write over the recovery.
Counters change in the same statement batch as the rows they count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from chatman.ledger import counters, states
from chatman.ledger.models import Message
from chatman.ledger.status import apply_pending_events


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    campaign_id: int
    run_id: int
    step_id: int
    contact_id: int
    attempts: int


@dataclass(frozen=True)
class Failure:
    row: ClaimedRow
    code: str | None
    message: str | None = None


def claim(session: Session, message_ids: Sequence[int], token: str, now: datetime) -> int:
    """Take the pending rows among `message_ids` for the batch `token`; returns how many."""
    return session.execute(
        update(Message)
        .where(Message.id.in_(message_ids), Message.status == states.PENDING)
        .values(
            status=states.CLAIMED,
            claim_token=token,
            claimed_at=now,
            handed_at=None,
            attempts=Message.attempts + 1,
        )
    ).rowcount


def release(session: Session, token: str, ids: Iterable[int], refund: bool = False) -> int:
    """Put claimed rows back to pending (nothing was sent): a pause, or a claim gone stale.
    `refund` gives the attempt back (a pause is not a failed try)."""
    ids = list(ids)
    if not ids:
        return 0
    attempts = Message.attempts - 1 if refund else Message.attempts
    return session.execute(
        update(Message)
        .where(Message.id.in_(ids), Message.claim_token == token, Message.status == states.CLAIMED)
        .values(status=states.PENDING, claim_token=None, handed_at=None, attempts=attempts)
    ).rowcount


def skip(session: Session, token: str, rows: Sequence[ClaimedRow], reason: str) -> int:
    """Record claimed rows as skipped for `reason`."""
    owned = _owned(session, token, rows)
    if owned:
        session.execute(
            update(Message)
            .where(Message.id.in_([r.id for r in owned]))
            .values(status=states.SKIPPED, skip_reason=reason, claim_token=None)
        )
        _count(session, owned, states.SKIPPED, skip_reason=reason)
    return len(owned)


def skip_pending(session: Session, run_ids: Iterable[int], reason: str) -> int:
    """Skip every row of these runs that no batch has taken yet (a cancelled campaign)."""
    run_ids = list(run_ids)
    if not run_ids:
        return 0
    rows = session.execute(
        update(Message)
        .where(Message.run_id.in_(run_ids), Message.status == states.PENDING)
        .values(status=states.SKIPPED, skip_reason=reason, claim_token=None)
        .returning(Message.campaign_id, Message.run_id, Message.step_id)
    ).all()
    _count(session, [ClaimedRow(0, c, r, s, 0, 0) for c, r, s in rows], states.SKIPPED, skip_reason=reason)
    return len(rows)


def hand(session: Session, token: str, ids: Sequence[int], now: datetime) -> set[int]:
    """Mark rows as going to the provider now; returns the ids this batch still owns.

    Committed before the provider call: from here on, a crash leaves a row the provider may
    or may not have, and recovery asks the provider rather than sending it again.
    """
    if not ids:
        return set()
    return set(
        session.scalars(
            update(Message)
            .where(Message.id.in_(ids), Message.claim_token == token, Message.status == states.CLAIMED)
            .values(handed_at=now)
            .returning(Message.id)
        )
    )


@dataclass
class Recorded:
    submitted: int = 0
    retry: int = 0
    failed: int = 0


def record_results(
    session: Session,
    token: str,
    submitted: Sequence[tuple[ClaimedRow, str]] = (),
    retry: Sequence[Failure] = (),
    failed: Sequence[Failure] = (),
    now: datetime | None = None,
) -> Recorded:
    """Record the provider's answers for rows the batch `token` owns.

    submitted: (row, provider sid); retry: back to pending for a later batch; failed: final,
    with the provider's code. Status callbacks that arrived before their sid are applied.
    """
    owned = {
        r.id
        for r in _owned(
            session, token, [*(r for r, _ in submitted), *(f.row for f in retry), *(f.row for f in failed)]
        )
    }
    submitted = [(r, sid) for r, sid in submitted if r.id in owned]
    retry = [f for f in retry if f.row.id in owned]
    failed = [f for f in failed if f.row.id in owned]
    table = Message.__table__
    by_id = table.c.id == bindparam("_id")
    connection = session.connection()
    if submitted:
        connection.execute(
            update(table)
            .where(by_id)
            .values(
                status=states.SUBMITTED, provider_sid=bindparam("sid"), submitted_at=now, claim_token=None
            ),
            [{"_id": r.id, "sid": sid} for r, sid in submitted],
        )
        _count(session, [r for r, _ in submitted], states.SUBMITTED, submitted=True)
        apply_pending_events(session, [sid for _, sid in submitted], now)
    if retry:
        connection.execute(
            update(table)
            .where(by_id)
            .values(
                status=states.PENDING,
                claim_token=None,
                handed_at=None,
                error_code=bindparam("code"),
                error_message=bindparam("text"),
            ),
            [{"_id": f.row.id, "code": f.code, "text": f.message} for f in retry],
        )
    if failed:
        connection.execute(
            update(table)
            .where(by_id)
            .values(
                status=states.FAILED,
                claim_token=None,
                error_code=bindparam("code"),
                error_message=bindparam("text"),
                failed_at=now,
            ),
            [{"_id": f.row.id, "code": f.code, "text": f.message} for f in failed],
        )
        for code, group in _group_by_code(failed).items():
            _count(session, group, states.FAILED, error_code=code)
    return Recorded(len(submitted), len(retry), len(failed))


@dataclass(frozen=True)
class StaleClaim:
    row: ClaimedRow
    token: str
    handed_at: datetime | None


def stale_claims(
    session: Session, claimed_before: datetime, limit: int = 1000, ids: Sequence[int] | None = None
) -> list[StaleClaim]:
    """Rows claimed before `claimed_before` (among `ids`, if given) that no batch finished."""
    query = select(
        Message.id,
        Message.campaign_id,
        Message.run_id,
        Message.step_id,
        Message.contact_id,
        Message.attempts,
        Message.claim_token,
        Message.handed_at,
    ).where(Message.status == states.CLAIMED, Message.claimed_at < claimed_before)
    if ids is not None:
        query = query.where(Message.id.in_(ids))
    return [
        StaleClaim(
            ClaimedRow(r.id, r.campaign_id, r.run_id, r.step_id, r.contact_id, r.attempts),
            r.claim_token,
            r.handed_at,
        )
        for r in session.execute(query.order_by(Message.id).limit(limit))
    ]


def _owned(session: Session, token: str, rows: Sequence[ClaimedRow]) -> list[ClaimedRow]:
    if not rows:
        return []
    ids = set(
        session.scalars(
            select(Message.id)
            .where(
                Message.id.in_([r.id for r in rows]),
                Message.claim_token == token,
                Message.status == states.CLAIMED,
            )
            # In id order, as every writer locks message rows: none waits on another in a cycle.
            .order_by(Message.id)
            .with_for_update()
        )
    )
    return [r for r in rows if r.id in ids]


def _count(
    session: Session,
    rows: Iterable[ClaimedRow],
    status: str,
    skip_reason: str | None = None,
    error_code: str | None = None,
    submitted: bool = False,
) -> None:
    before = counters.metrics_of(states.CLAIMED, None, None, False)
    change = counters.delta(before, counters.metrics_of(status, skip_reason, error_code, submitted))
    per_step = Counter((r.campaign_id, r.run_id, r.step_id) for r in rows)
    counters.apply(
        session, [(*key, {m: n * count for m, n in change.items()}) for key, count in per_step.items()]
    )


def _group_by_code(failures: Sequence[Failure]) -> dict[str | None, list[ClaimedRow]]:
    groups: dict[str | None, list[ClaimedRow]] = {}
    for f in failures:
        groups.setdefault(f.code, []).append(f.row)
    return groups
