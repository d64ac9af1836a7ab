"""Deliveries: queued with a fixed webhook id, claimed before each attempt, and settled by what
the endpoint answered, on the Standard Webhooks retry schedule.

A delivery row is both the schedule and the audit: `next_attempt_at` says when it is due, and
a claim moves it on by `claim_for` (a conditional UPDATE, so of two workers one wins), which
is how a worker that died mid-attempt leaves the row due again. The result of an attempt is
written only while the claim it was made under is the latest (the attempt count matches), so
a late answer cannot undo what a newer attempt decided; a 2xx is always kept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatman.errors import DomainError, Invalid
from chatman.outgoing import transport
from chatman.outgoing.models import (
    DELIVERED,
    FAILED,
    PENDING,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from chatman.outgoing.signing import new_webhook_id
from chatman.timeutils import utcnow

# The wait after each failed attempt (Standard Webhooks' example schedule): attempts at 0,
# 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h and 24 h after the one before, about three
# days in all; the tenth failure is the last.
RETRY_DELAYS = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
)
MAX_ATTEMPTS = len(RETRY_DELAYS) + 1
EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
MAX_EVENT_TYPE = 64
MAX_PAYLOAD_BYTES = 256 * 1024
REASON_LENGTH = 500

# What an attempt's answer means for its delivery.
RETRY, GIVE_UP, GONE = "retry", "give_up", "gone"


class EndpointUnavailable(DomainError):
    """A delivery was asked of an endpoint that does not exist or is disabled."""


def claim_for(timeout_s: float) -> timedelta:
    """How long a claim holds a delivery: a request may take a connect timeout and a read
    timeout, and the lookup before them; a worker silent for longer is taken for dead."""
    return timedelta(seconds=3 * timeout_s + 30)


def queue_delivery(
    session: Session,
    endpoint_id: int,
    event_type: str,
    payload: Mapping[str, Any],
    now: datetime | None = None,
) -> int:
    """Queue `payload` (a JSON object) for an endpoint, due at once; returns the delivery id.
    Flushes, never commits: the delivery belongs to the caller's transaction, so an event
    whose transaction rolls back is never sent. After the commit, hand the id to a worker
    (jobs.enqueue_webhook_deliveries); the clock sends it anyway if that is lost.

    Raises EndpointUnavailable (missing or disabled endpoint) and Invalid (a bad event type,
    or a payload that is no JSON object or is over MAX_PAYLOAD_BYTES)."""
    now = now or utcnow()
    endpoint = (
        session.get(WebhookEndpoint, endpoint_id)
        if isinstance(endpoint_id, int) and not isinstance(endpoint_id, bool)
        else None
    )
    if endpoint is None:
        raise EndpointUnavailable(f"webhook endpoint {endpoint_id} does not exist (was it deleted?)")
    if not endpoint.enabled:
        raise EndpointUnavailable(
            f"webhook endpoint {endpoint.id} ({endpoint.name!r}) is disabled: "
            f"{endpoint.disabled_reason or 'turned off'}; enable it again to send to it"
        )
    if (
        not isinstance(event_type, str)
        or len(event_type) > MAX_EVENT_TYPE
        or not EVENT_TYPE.fullmatch(event_type)
    ):
        raise Invalid(
            "event_type", f"lower-case words joined by dots, e.g. rule.fired (at most {MAX_EVENT_TYPE})"
        )
    if not isinstance(payload, Mapping):
        raise Invalid("payload", "a JSON object")
    try:
        encoded = json.dumps(payload, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as error:
        raise Invalid("payload", f"not JSON: {error}") from None
    if len(encoded.encode()) > MAX_PAYLOAD_BYTES:
        raise Invalid("payload", f"at most {MAX_PAYLOAD_BYTES // 1024} KB of JSON")
    delivery = WebhookDelivery(
        endpoint_id=endpoint.id,
        webhook_id=new_webhook_id(),
        event_type=event_type,
        payload=json.loads(encoded),  # exactly what JSON keeps (tuples become lists)
        status=PENDING,
        attempt_count=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    return delivery.id


def any_due(session: Session, now: datetime) -> bool:
    return bool(due_ids(session, now, limit=1))


def due_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Pending deliveries whose next attempt has come, longest waiting first (by index)."""
    return list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
    )


def claim(session: Session, delivery_ids: Sequence[int], now: datetime, hold: timedelta) -> dict[int, int]:
    """Take the due ones of these deliveries for one attempt each: {delivery id: attempt
    number}. A delivery another worker holds, or one not due yet, is left out. Commits."""
    if not delivery_ids:
        return {}
    rows = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id.in_(list(delivery_ids)),
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(attempt_count=WebhookDelivery.attempt_count + 1, next_attempt_at=now + hold)
        .returning(WebhookDelivery.id, WebhookDelivery.attempt_count),
        execution_options={"synchronize_session": False},
    ).all()
    session.commit()
    return dict(rows)


def verdict(answer: transport.Answer) -> str:
    """2xx: delivered; 410: the endpoint is gone; no answer in time, a connection that failed,
    5xx or 429: try again later; anything else (other 4xx, 3xx, a refused address): give up."""
    if answer.outcome in (transport.TIMEOUT, transport.UNREACHABLE):
        return RETRY
    if answer.outcome != transport.ANSWERED or answer.status_code is None:
        return GIVE_UP
    code = answer.status_code
    if 200 <= code < 300:
        return DELIVERED
    if code == 410:
        return GONE
    if code == 429 or code >= 500:
        return RETRY
    return GIVE_UP


def record(session: Session, delivery_id: int, attempt: int, answer: transport.Answer, now: datetime) -> str:
    """Keep the attempt and settle or reschedule its delivery; returns the verdict. A GONE
    verdict fails this delivery only: the caller disables the endpoint after committing
    (disable_endpoint), so this transaction locks one delivery row and no more."""
    session.add(
        WebhookAttempt(
            delivery_id=delivery_id,
            attempt=attempt,
            attempted_at=now,
            status_code=answer.status_code,
            duration_ms=answer.duration_ms,
            error=answer.error,
        )
    )
    session.flush()
    outcome = verdict(answer)
    pending = (WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING)
    ours = (*pending, WebhookDelivery.attempt_count == attempt)
    if outcome == DELIVERED:
        values: dict[str, Any] = {
            "status": DELIVERED,
            "delivered_at": now,
            "next_attempt_at": None,
            "reason": None,
        }
        where = pending
    elif outcome == RETRY and attempt < MAX_ATTEMPTS:
        values = {
            "next_attempt_at": now + RETRY_DELAYS[attempt - 1],
            "reason": _cut(f"attempt {attempt} failed: {answer.error}"),
        }
        where = ours
    else:
        why = {
            RETRY: f"gave up after {attempt} attempts; the last: {answer.error}",
            GONE: f"the endpoint answered 410 Gone and was disabled: {answer.error}",
            GIVE_UP: f"not retried: {answer.error}",
        }[outcome]
        values = {"status": FAILED, "next_attempt_at": None, "reason": _cut(why)}
        where = ours
    session.execute(
        update(WebhookDelivery).where(*where).values(**values),
        execution_options={"synchronize_session": False},
    )
    return outcome


def fail_unsent(session: Session, delivery_id: int, reason: str) -> None:
    """Settle a claimed delivery that will not be attempted (its endpoint is disabled)."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.status == PENDING)
        .values(status=FAILED, next_attempt_at=None, reason=_cut(reason)),
        execution_options={"synchronize_session": False},
    )


def disable_endpoint(session: Session, endpoint_id: int, reason: str, now: datetime) -> int:
    """Turn an endpoint off with why, and fail its pending deliveries (they would only be
    refused); returns how many failed. Enabling it again does not bring them back: events
    from while it was off are not sent late. The caller commits."""
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.enabled.is_(True))
        .values(enabled=False, disabled_reason=_cut(reason), disabled_at=now, updated_at=now),
        execution_options={"synchronize_session": False},
    )
    failed = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.status == PENDING)
        .values(
            status=FAILED,
            next_attempt_at=None,
            reason=_cut(f"not sent: the endpoint was disabled ({reason})"),
        ),
        execution_options={"synchronize_session": False},
    )
    return failed.rowcount


def _cut(text: str) -> str:
    return text if len(text) <= REASON_LENGTH else text[: REASON_LENGTH - 1] + "…"
