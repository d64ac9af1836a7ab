"""A send's moves through the ledger: claim rows under a lease, hand them over, record what
happened.

pending -> claimed (a holder owns the row under its token) -> handed (`handed_at`: the row is
going to the provider now) -> submitted or failed; or back to pending (a retryable error, a
pause, a claim whose holder died before handing it over); or unconfirmed (handed over, and the
provider could not tell whether it has it: never sent again). Every move is conditional on the
holder's token, so a holder that lost its claim cannot write over whoever took it over.
Counters change in the same transaction as the rows they count.

A claim comes with a lease (`claim_leases`), which its holder renews every few seconds while it
works (`keep_lease`). A lease that ran out belongs to a holder that died (a worker killed, a
machine gone): recovery takes the rows over, so a dead worker's rows move on within a minute.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, bindparam, delete, exists, func, insert, or_, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from chatman.ledger import counters, series, states
from chatman.ledger.models import ClaimLease, Message
from chatman.ledger.status import apply_pending_events
from chatman.timeutils import utcnow

# The columns a ClaimedRow is made of.
CLAIMED = (
    Message.id,
    Message.campaign_id,
    Message.run_id,
    Message.step_id,
    Message.contact_id,
    Message.attempts,
)
# A holder renews its lease every RENEW_S; one not renewed for LEASE_S is dead.
LEASE_S = 20
RENEW_S = 5
# A holder starts no request to the provider unless it renewed its lease this recently, so
# whatever it started ends (a send takes 32 s at the most: three tries of 10 s, backing off)
# before HANDED_GRACE after its lease ran out.
SEND_FRESH_S = 10
# A row handed to the provider is looked up only this long after its holder's lease ran out,
# when no request of that holder can still be on its way. (Hosts' clocks are taken to agree
# within a few seconds, as NTP keeps them.)
HANDED_GRACE = timedelta(seconds=25)
HOLDER = f"{socket.gethostname()}:{os.getpid()}"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    campaign_id: int | None
    run_id: int | None
    step_id: int | None
    contact_id: int | None
    attempts: int


@dataclass(frozen=True)
class Failure:
    row: ClaimedRow
    code: str | None
    message: str | None = None


def claim(session: Session, message_ids: Sequence[int], token: str, now: datetime) -> int:
    """Take the pending rows among `message_ids` for the holder `token`, with a lease on
    them; returns how many."""
    taken = session.execute(
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
    if taken:
        lease(session, token, now + timedelta(seconds=LEASE_S))
    return taken


def lease(session: Session, token: str, until: datetime) -> None:
    session.execute(insert(ClaimLease).values(token=token, holder=HOLDER, expires_at=until))


def hold(session: Session, token: str, until: datetime) -> None:
    """Keep the holder's rows from recovery until `until` (the provider is settling them)."""
    session.execute(update(ClaimLease).where(ClaimLease.token == token).values(expires_at=until))


def end_lease(session: Session, token: str, hold_until: datetime | None = None) -> None:
    """The holder is done: its lease goes, unless it still has rows claimed (they keep it).
    With `hold_until`, rows the provider did not answer are kept from recovery until then
    (the provider is settling them)."""
    if hold_until is not None:
        hold(session, token, hold_until)
        return
    session.execute(
        delete(ClaimLease).where(
            ClaimLease.token == token,
            ~exists().where(Message.claim_token == token, Message.status == states.CLAIMED),
        )
    )


def renew(connection: Connection, tokens: Sequence[str], now: datetime) -> None:
    until = now + timedelta(seconds=LEASE_S)
    connection.execute(
        update(ClaimLease)
        .where(ClaimLease.token.in_(tokens), ClaimLease.expires_at < until)
        .values(expires_at=until)
    )


class Lease:
    """A lease being renewed (see keep_lease), and whether it is safe to start a send."""

    def __init__(self) -> None:
        self.renewed = time.monotonic()  # taken (or renewed) in the database at this moment

    def fresh(self) -> bool:
        """Renewed recently enough that nobody can have taken the rows over, nor will while a
        send started now lasts: a holder that cannot renew (its database unreachable) stops
        sending rather than race the recovery."""
        return time.monotonic() - self.renewed < SEND_FRESH_S


@contextmanager
def keep_lease(engine: Engine, token: str) -> Iterator[Lease]:
    """Renew `token`'s lease every RENEW_S, from a thread with its own connection, while the
    block runs: the lease then lasts as long as the process that holds it."""
    stop = threading.Event()
    lease = Lease()

    def beat() -> None:
        while not stop.wait(RENEW_S):
            started = time.monotonic()
            try:
                with engine.begin() as connection:
                    renew(connection, [token], utcnow())
                lease.renewed = started
            except SQLAlchemyError as exc:  # the database is away: the next beat tries again
                log.warning("could not renew lease %s: %s", token, exc)

    thread = threading.Thread(target=beat, name=f"lease-{token[:8]}", daemon=True)
    thread.start()
    try:
        yield lease
    finally:
        stop.set()
        thread.join(RENEW_S)


def release(session: Session, token: str, ids: Iterable[int], refund: bool = False) -> int:
    """Put claimed rows back to pending (nothing was sent): a pause, or a dead holder's rows.
    `refund` gives the attempt back (a pause is not a failed try)."""
    ids = list(ids)
    if not ids:
        return 0
    attempts = Message.attempts - 1 if refund else Message.attempts
    return session.execute(
        update(Message)
        .where(
            Message.id.in_(ids),
            Message.claim_token == token,
            Message.status == states.CLAIMED,
            # One handed over meanwhile (its holder was slow, not dead) is the provider's now.
            Message.handed_at.is_(None),
        )
        .values(status=states.PENDING, claim_token=None, attempts=attempts)
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
    """Skip every row of these runs that no batch has taken yet, or that waits for its send
    window (a cancelled campaign)."""
    run_ids = list(run_ids)
    if not run_ids:
        return 0
    skipped = 0
    for status in (states.PENDING, states.HELD):
        ids = lock_in_order(session, Message.run_id.in_(run_ids), Message.status == status)
        rows = session.execute(
            update(Message)
            .where(Message.id.in_(ids), Message.status == status)
            .values(status=states.SKIPPED, skip_reason=reason, claim_token=None, hold_until=None)
            .returning(Message.campaign_id, Message.run_id, Message.step_id)
        ).all()
        _count(
            session,
            [ClaimedRow(0, c, r, s, 0, 0) for c, r, s in rows],
            states.SKIPPED,
            skip_reason=reason,
            before=status,
        )
        skipped += len(rows)
    return skipped


def defer(session: Session, token: str, rows: Sequence[ClaimedRow], until: datetime) -> int:
    """Hold claimed rows until `until` (their send window is closed): nothing was sent, and
    the attempt is given back."""
    owned = _owned(session, token, rows)
    if owned:
        session.execute(
            update(Message)
            .where(Message.id.in_([r.id for r in owned]))
            .values(status=states.HELD, hold_until=until, claim_token=None, attempts=Message.attempts - 1)
        )
        _count(session, owned, states.HELD)
    return len(owned)


def release_held(
    session: Session, now: datetime, limit: int = 1000, where: Sequence[ColumnElement[bool]] = ()
) -> dict[int, list[int]]:
    """Put back to pending up to `limit` held rows (matching `where`) whose window has opened
    by `now`, by a conditional UPDATE (two clocks never release one row twice); returns their
    ids by run, for the caller to send."""
    due = (
        select(Message.id)
        .where(Message.status == states.HELD, Message.hold_until <= now, *where)
        .order_by(Message.hold_until, Message.id)
        .limit(limit)
    )
    ids = list(session.scalars(due))
    if not ids:
        return {}
    rows = session.execute(
        update(Message)
        .where(Message.id.in_(ids), Message.status == states.HELD)
        .values(status=states.PENDING, hold_until=None)
        .returning(Message.id, Message.campaign_id, Message.run_id, Message.step_id)
    ).all()
    _count(session, [ClaimedRow(i, c, r, s, 0, 0) for i, c, r, s in rows], states.PENDING, before=states.HELD)
    by_run: dict[int, list[int]] = {}
    for row in sorted(rows):
        by_run.setdefault(row.run_id, []).append(row.id)
    return by_run


def hand(
    session: Session, token: str, ids: Sequence[int], now: datetime, marketing: Iterable[int] = ()
) -> set[int]:
    """Mark rows as going to the provider now, those in `marketing` as marketing messages
    (the contact's marketing cap counts them); returns the ids this holder still owns, under
    a lease that has not run out (a holder that lost it must not send).

    Committed before the provider call: from here on, a crash leaves a row the provider may
    or may not have, and recovery asks the provider rather than sending it again.
    """
    if not ids:
        return set()
    leased = exists().where(ClaimLease.token == token, ClaimLease.expires_at > now)
    return set(
        session.scalars(
            update(Message)
            .where(
                Message.id.in_(ids), Message.claim_token == token, Message.status == states.CLAIMED, leased
            )
            .values(handed_at=now, marketing=Message.id.in_(list(marketing)))
            .returning(Message.id)
        )
    )


@dataclass
class Recorded:
    submitted: int = 0
    retry: int = 0
    failed: int = 0
    unconfirmed: int = 0


def record_results(
    session: Session,
    token: str,
    submitted: Sequence[tuple[ClaimedRow, str]] = (),
    retry: Sequence[Failure] = (),
    failed: Sequence[Failure] = (),
    unconfirmed: Sequence[ClaimedRow] = (),
    now: datetime | None = None,
    unhanded: bool = False,
) -> Recorded:
    """Record the provider's answers for rows the holder `token` owns (with `unhanded`: only
    those not handed to the provider, as a slow holder may have done meanwhile).

    submitted: (row, provider sid); retry: back to pending for a later batch; failed: final,
    with the provider's code; unconfirmed: the provider could not tell, never sent again.
    Status callbacks that arrived before their sid are applied.
    """
    rows = [*(r for r, _ in submitted), *(f.row for f in retry), *(f.row for f in failed), *unconfirmed]
    owned = {r.id for r in _owned(session, token, rows, unhanded)}
    submitted = [(r, sid) for r, sid in submitted if r.id in owned]
    retry = [f for f in retry if f.row.id in owned]
    failed = [f for f in failed if f.row.id in owned]
    unconfirmed = [r for r in unconfirmed if r.id in owned]
    table = Message.__table__
    by_id = table.c.id == bindparam("_id")
    connection = session.connection()
    if submitted:
        connection.execute(
            update(table)
            .where(by_id)
            .values(
                status=states.SUBMITTED,
                provider_sid=bindparam("sid"),
                submitted_at=now,
                claim_token=None,
                # What an earlier try failed with is history, not this row's outcome.
                error_code=None,
                error_message=None,
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
        series.add_failures(session, [(f.row.campaign_id, f.code, now) for f in failed])
    if unconfirmed:
        session.execute(
            update(Message)
            .where(Message.id.in_([r.id for r in unconfirmed]))
            .values(status=states.UNCONFIRMED, claim_token=None)
        )
        _count(session, unconfirmed, states.UNCONFIRMED)
    return Recorded(len(submitted), len(retry), len(failed), len(unconfirmed))


@dataclass(frozen=True)
class StaleClaim:
    row: ClaimedRow
    token: str
    handed_at: datetime | None
    lookups: int


def stale_claims(
    session: Session,
    now: datetime,
    legacy_before: datetime,
    limit: int = 1000,
    ids: Sequence[int] | None = None,
) -> list[StaleClaim]:
    """Claimed rows (among `ids`, if given) whose holder is gone: its lease ran out (for a
    handed row, HANDED_GRACE ago), or, for a claim with no lease (made before leases were
    kept), it was claimed before `legacy_before`."""
    expired = ClaimLease.expires_at < now
    query = (
        select(*CLAIMED, Message.claim_token, Message.handed_at, Message.lookups)
        .outerjoin(ClaimLease, ClaimLease.token == Message.claim_token)
        .where(
            Message.status == states.CLAIMED,
            or_(
                and_(ClaimLease.token.is_(None), Message.claimed_at < legacy_before),
                and_(Message.handed_at.is_(None), expired),
                and_(Message.handed_at.is_not(None), ClaimLease.expires_at < now - HANDED_GRACE),
            ),
        )
    )
    if ids is not None:
        query = query.where(Message.id.in_(ids))
    return [
        StaleClaim(
            ClaimedRow(r.id, r.campaign_id, r.run_id, r.step_id, r.contact_id, r.attempts),
            r.claim_token,
            r.handed_at,
            r.lookups,
        )
        for r in session.execute(query.order_by(Message.id).limit(limit))
    ]


def adopt(session: Session, claims: Sequence[StaleClaim], token: str, until: datetime) -> list[StaleClaim]:
    """Take over a dead holder's rows under `token`, leased until `until`; returns those taken
    (another recovery may have been quicker with some)."""
    by_token: dict[str, list[int]] = {}
    for claim in claims:
        by_token.setdefault(claim.token, []).append(claim.row.id)
    taken: set[int] = set()
    for old, ids in by_token.items():
        taken |= set(
            session.scalars(
                update(Message)
                .where(Message.id.in_(ids), Message.claim_token == old, Message.status == states.CLAIMED)
                .values(claim_token=token)
                .returning(Message.id)
            )
        )
        end_lease(session, old)
    if taken:
        lease(session, token, until)
    return [c for c in claims if c.row.id in taken]


def count_lookup(session: Session, token: str, ids: Sequence[int]) -> None:
    """One more provider lookup that told us nothing, for these rows."""
    if ids:
        session.execute(
            update(Message)
            .where(Message.id.in_(ids), Message.claim_token == token)
            .values(lookups=Message.lookups + 1)
        )


def overdue_claims(session: Session, claimed_before: datetime) -> int:
    """Rows claimed (or handed) before `claimed_before` and still not decided."""
    return session.scalar(
        select(func.count(Message.id)).where(
            Message.status == states.CLAIMED, Message.claimed_at < claimed_before
        )
    )


def sweep_leases(session: Session, now: datetime) -> int:
    """Forget leases that ran out and hold no row (their holder died after its last row)."""
    return session.execute(
        delete(ClaimLease).where(
            ClaimLease.expires_at < now,
            ~exists().where(Message.claim_token == ClaimLease.token, Message.status == states.CLAIMED),
        )
    ).rowcount


def lock_in_order(session: Session, *where) -> list[int]:
    """Lock the message rows that match, in id order, and return their ids. Writers that touch
    many rows at once (a cancel, an erasure, the status drain) lock this way, so none waits on
    another in a cycle."""
    return list(session.scalars(select(Message.id).where(*where).order_by(Message.id).with_for_update()))


def _owned(
    session: Session, token: str, rows: Sequence[ClaimedRow], unhanded: bool = False
) -> list[ClaimedRow]:
    if not rows:
        return []
    where = [
        Message.id.in_([r.id for r in rows]),
        Message.claim_token == token,
        Message.status == states.CLAIMED,
    ]
    if unhanded:
        where.append(Message.handed_at.is_(None))
    ids = set(lock_in_order(session, *where))
    return [r for r in rows if r.id in ids]


def _count(
    session: Session,
    rows: Iterable[ClaimedRow],
    status: str,
    skip_reason: str | None = None,
    error_code: str | None = None,
    submitted: bool = False,
    before: str = states.CLAIMED,
) -> None:
    before = counters.metrics_of(before, None, None, False)
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
