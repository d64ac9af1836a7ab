"""Applying provider status callbacks to the ledger: kept, deduplicated, forward only.

Callbacks are applied in batches: every callback is stored once in `message_events`
(unique on sid and status), then the unapplied events of each known sid are folded onto its
message row, which only ever moves forward. Events for a sid we do not know yet stay
unapplied until the sid appears (`apply_pending_events` is called when it does, and the
clock sweeps up any that a race left behind).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from chatman.db import TRY_AGAIN_LATER
from chatman.dialects import insert_ignore
from chatman.ledger import counters, series, states
from chatman.ledger.models import Message, MessageEvent
from chatman.timeutils import utcnow

TIMESTAMP = {
    states.SENT: "sent_at",
    states.DELIVERED: "delivered_at",
    states.READ: "read_at",
    states.FAILED: "failed_at",
}
TIMES = tuple(getattr(Message, c) for c in TIMESTAMP.values())
METRIC = {column: metric for metric, column in series.TIMED.items()}
TIMES_CHARTED = ("sent_at", "delivered_at", "read_at")


@dataclass(frozen=True)
class StatusUpdate:
    """A provider's report on one message, as a webhook parsed it."""

    provider_sid: str
    status: str
    error_code: str | None = None
    error_message: str | None = None
    payload: dict[str, Any] | None = None
    # Our row, when the callback URL named it: ties the sid to the row even if the send's own
    # answer was lost.
    message_id: int | None = None
    # When we accepted it (the webhook's answer); None: now.
    received_at: datetime | None = None


@dataclass
class Outcome:
    stored: int = 0  # new (sid, status) pairs kept
    duplicates: int = 0  # seen before: nothing changed
    moved: int = 0  # message rows that moved forward
    tied: int = 0  # rows whose sid only the callback told us (the send's answer was lost)
    waiting: set[str] = field(default_factory=set)  # sids not known yet


def record_many(session: Session, events: Sequence[StatusUpdate], now: datetime | None = None) -> Outcome:
    """Keep `events` (once per sid and status) and apply them; the caller commits."""
    now = now or utcnow()
    rows = {
        (e.provider_sid, e.status): {
            "provider_sid": e.provider_sid,
            "status": e.status,
            "error_code": e.error_code,
            "error_message": e.error_message,
            "payload": e.payload or {},
            "applied": False,
            "received_at": e.received_at or now,
        }
        for e in events
    }
    outcome = Outcome()
    # Sorted, so that two batches inserting overlapping keys take their locks in one order.
    outcome.stored = insert_ignore(
        session, MessageEvent, [rows[k] for k in sorted(rows)], ["provider_sid", "status"]
    )
    outcome.duplicates = len(events) - outcome.stored
    outcome.tied = _tie(session, events, now)
    _forget_erased(session, {e.provider_sid for e in events})
    sids = {e.provider_sid for e in events}
    outcome.moved, known = _apply(session, sids, now)
    outcome.waiting = sids - known
    return outcome


# The database is away or busy (a lost connection, a deadlock, a lock timeout): the same
# events are worth another try later. Any other error is about the events themselves.


def record_isolated(
    sessions: sessionmaker, events: Sequence[StatusUpdate], now: datetime | None = None
) -> list[tuple[int, str]]:
    """Keep and apply `events`, committing; when the database refuses a batch, its halves are
    tried apart, down to the events it refuses. Returns (index in `events`, why) of those: the
    rest are committed. Raises the errors worth trying again later (TRY_AGAIN_LATER)."""
    refused: list[tuple[int, str]] = []

    def attempt(indexes: list[int]) -> None:
        with sessions() as session:
            try:
                record_many(session, [events[i] for i in indexes], now)
                session.commit()
                return
            except TRY_AGAIN_LATER:
                raise
            # The database refused the batch, or its driver could not encode a value (a lone
            # surrogate): something in it will not go in. Anything else is no fault of the
            # events (a bug, a job timeout) and is raised: they stay in the inbox, unacknowledged.
            except (SQLAlchemyError, UnicodeError) as exc:
                session.rollback()
                error = exc
        if len(indexes) == 1:
            refused.append((indexes[0], f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"))
            return
        middle = len(indexes) // 2
        attempt(indexes[:middle])
        attempt(indexes[middle:])

    if events:
        attempt(list(range(len(events))))
    return refused


def record(session: Session, event: StatusUpdate, now: datetime | None = None) -> str:
    """One callback: duplicate, applied, unchanged or waiting (unknown sid)."""
    outcome = record_many(session, [event], now)
    if outcome.duplicates:
        return "duplicate"
    if outcome.waiting:
        return "waiting"
    return "applied" if outcome.moved else "unchanged"


def apply_pending_events(session: Session, sids: Iterable[str], now: datetime | None = None) -> int:
    """Apply events that arrived before their sid was known; returns rows moved."""
    return _apply(session, set(sids), now or utcnow())[0]


def sids_with_pending_events(session: Session, limit: int = 1000) -> list[str]:
    """Known sids that still have unapplied events (a callback that raced its send)."""
    return list(
        session.scalars(
            select(MessageEvent.provider_sid)
            .join(Message, Message.provider_sid == MessageEvent.provider_sid)
            .where(MessageEvent.applied.is_(False))
            .distinct()
            .limit(limit)
        )
    )


# A row whose send's answer may have been lost: the callback's row id ties the sid to it.
TIEABLE = (states.PENDING, states.CLAIMED, states.UNCONFIRMED)


def _tie(session: Session, events: Sequence[StatusUpdate], now: datetime) -> int:
    """Give rows the sids that callbacks naming them (our StatusCallback URL carries the row
    id, under the provider's signature) report, where the row has no sid yet. Returns rows tied."""
    named: dict[str, int] = {}
    for e in events:
        if e.message_id is not None:
            named.setdefault(e.provider_sid, e.message_id)
    if not named:
        return 0
    known = set(session.scalars(select(Message.provider_sid).where(Message.provider_sid.in_(named))))
    wanted = {m: sid for sid, m in named.items() if sid not in known}
    if not wanted:
        return 0
    rows = session.execute(
        select(Message.id, *counters.COUNTED)
        .where(Message.id.in_(wanted), Message.provider_sid.is_(None), Message.status.in_(TIEABLE))
        .order_by(Message.id)
        .with_for_update()
    ).all()
    if not rows:
        return 0
    table = Message.__table__
    session.connection().execute(
        update(table)
        .where(table.c.id == bindparam("_id"))
        .values(
            provider_sid=bindparam("sid"),
            status=states.SUBMITTED,
            submitted_at=now,
            claim_token=None,
            error_code=None,
            error_message=None,
        ),
        [{"_id": row.id, "sid": wanted[row.id]} for row in rows],
    )
    after = counters.metrics_of(states.SUBMITTED, None, None, True)
    changes = []
    for row in rows:
        before = counters.metrics_of(row.status, row.skip_reason, row.error_code, False)
        changes.append((row.campaign_id, row.run_id, row.step_id, counters.delta(before, after)))
    counters.apply(session, changes)
    return len(rows)


def _forget_erased(session: Session, sids: set[str]) -> None:
    """A callback for a message whose contact was deleted keeps nothing that names them (its
    payload carries the phone number): the contact was erased, their messages stay anonymous."""
    erased = select(Message.provider_sid).where(Message.provider_sid.in_(sids), Message.contact_id.is_(None))
    session.execute(
        update(MessageEvent)
        .where(MessageEvent.provider_sid.in_(erased), MessageEvent.applied.is_(False))
        .values(payload={}, error_message=None)
        .execution_options(synchronize_session=False)
    )


def _apply(session: Session, sids: set[str], now: datetime) -> tuple[int, set[str]]:
    """Fold each known sid's unapplied events onto its row; returns (rows moved, known sids)."""
    if not sids:
        return 0, set()
    messages = session.execute(
        select(
            Message.id,
            Message.campaign_id,
            Message.run_id,
            Message.step_id,
            Message.provider_sid,
            Message.status,
            Message.skip_reason,
            Message.error_code,
            Message.submitted_at,
            *TIMES,
        )
        .where(Message.provider_sid.in_(sids))
        .order_by(Message.id)
        # Rows stay locked until commit, so concurrent batches fold onto the latest status.
        # FOR NO KEY UPDATE: a rule firing's foreign key to the row (a key share) may be taken
        # meanwhile, where FOR UPDATE would deadlock with the rules job holding it.
        .with_for_update(key_share=True)
    ).all()
    if not messages:
        return 0, set()
    known = {m.provider_sid for m in messages}
    pending: dict[str, list] = defaultdict(list)
    for event in session.execute(
        select(
            MessageEvent.id,
            MessageEvent.provider_sid,
            MessageEvent.status,
            MessageEvent.error_code,
            MessageEvent.error_message,
            MessageEvent.received_at,
            # The provider's own time, where its payload has one (only that key is read).
            MessageEvent.payload["timestamp"].as_string().label("provider_timestamp"),
        )
        .where(MessageEvent.provider_sid.in_(known), MessageEvent.applied.is_(False))
        .order_by(MessageEvent.id)
    ):
        pending[event.provider_sid].append(event)
    changes: list[dict[str, Any]] = []
    deltas = []
    timed, failures = [], []
    for row in messages:
        values = _fold(row, pending.get(row.provider_sid, ()), now)
        if values is None:
            continue
        timed += [(row.campaign_id, METRIC[c], values[c]) for c in TIMES_CHARTED if c in values]
        if "failed_at" in values:
            failures.append((row.campaign_id, values["error_code"], values["failed_at"]))
        submitted = row.submitted_at is not None
        before = counters.metrics_of(row.status, row.skip_reason, row.error_code, submitted)
        after = counters.metrics_of(values["status"], row.skip_reason, values["error_code"], submitted)
        deltas.append((row.campaign_id, row.run_id, row.step_id, counters.delta(before, after)))
        changes.append({"_id": row.id, **values})
    table = Message.__table__
    for columns, group in _by_columns(changes).items():
        session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values({c: bindparam(f"v_{c}") for c in columns}),
            [{"_id": change["_id"], **{f"v_{c}": change[c] for c in columns}} for change in group],
        )
    counters.apply(session, deltas)
    series.add(session, timed)
    series.add_failures(session, failures)
    applied = [e.id for events in pending.values() for e in events]
    for start in range(0, len(applied), 1000):
        session.execute(
            update(MessageEvent)
            .where(MessageEvent.id.in_(applied[start : start + 1000]))
            .values(applied=True, applied_at=now)
        )
    return len(changes), known


def _fold(row, events: Iterable, now: datetime) -> dict[str, Any] | None:
    """The row's new values after `events`, or None when none moves it forward. Each state
    reached is timed by its event (the provider's own time, else when we accepted it); a
    state reached implies the ones before it (a read message was sent and delivered), which
    take its time when they have none of their own."""
    current = row.status
    target, error = current, (None, None)
    times: dict[str, datetime] = {}
    for event in events:
        new = states.PROVIDER_STATUS.get(event.status)
        if new is None or not states.moves_forward(current, new):
            continue
        times[new] = min(times.get(new, now), event_time(event, now))
        if states.moves_forward(target, new):
            target = new
            if new == states.FAILED:
                error = (event.error_code, event.error_message)
    if target == current:
        return None
    values: dict[str, Any] = {"status": target, "error_code": None, "error_message": None}
    if target == states.FAILED:
        values["error_code"], values["error_message"] = error
    # A failure is timed only when the row ends failed; it implies no earlier state.
    chain = [states.FAILED] if target == states.FAILED else []
    chain += [
        s for s in (states.READ, states.DELIVERED, states.SENT) if states.RANK[s] <= states.RANK[target]
    ]
    later: datetime | None = None
    for state in chain:
        at = times.get(state)
        if state != states.FAILED:
            at = at if later is None else min(at or later, later)
            later = at
        column = TIMESTAMP[state]
        if at is not None and getattr(row, column) is None:
            values[column] = at
    return values


def event_time(event, default: datetime) -> datetime:
    """When a status happened: the provider's timestamp where its payload carries one (Meta's
    Unix `timestamp`), else when our webhook accepted it."""
    stamp = event.provider_timestamp
    if stamp is not None:
        try:
            return datetime.fromtimestamp(int(stamp), tz=UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            pass
    return event.received_at or default


def _by_columns(changes: list[dict[str, Any]]) -> dict[tuple[str, ...], list[dict[str, Any]]]:
    """executemany needs one set of columns per statement."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for change in changes:
        groups[tuple(sorted(k for k in change if k != "_id"))].append(change)
    return groups
