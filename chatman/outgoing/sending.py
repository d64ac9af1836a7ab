"""Sending deliveries: claim a handful, sign and POST them at once, record each answer.

Each answer is recorded in its own short transaction (one delivery row), and an endpoint that
answered 410 is disabled in the next, so two workers settling deliveries of one endpoint never
wait on each other's rows in a cycle.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatman.outgoing import deliveries, signing, transport
from chatman.outgoing.models import WebhookDelivery, WebhookEndpoint


def deliver(
    session: Session, sender: transport.Sender, delivery_ids: Sequence[int], now: datetime
) -> Counter[str]:
    """Make one attempt at each of these deliveries that is due at `now` and not held by
    another worker; returns how many got each verdict (delivered, retry, give_up, gone) and
    how many were `skipped` (their endpoint is off)."""
    report: Counter[str] = Counter()
    hold = deliveries.claim_for(sender.timeout_s)
    for start in range(0, len(delivery_ids), sender.concurrency):
        claimed = deliveries.claim(session, delivery_ids[start : start + sender.concurrency], now, hold)
        if claimed:
            report += _attempt(session, sender, claimed, now)
    return report


def deliver_due(
    session: Session, sender: transport.Sender, now: datetime, until: float
) -> tuple[Counter[str], bool]:
    """Attempt the deliveries due at `now`, longest waiting first, until none is left or the
    monotonic deadline `until` has passed; returns the verdicts and whether some are left."""
    report: Counter[str] = Counter()
    while ids := deliveries.due_ids(session, now, limit=4 * sender.concurrency):
        report += deliver(session, sender, ids, now)
        if time.monotonic() > until:
            return report, deliveries.any_due(session, now)
    return report, False


def _attempt(
    session: Session, sender: transport.Sender, claimed: dict[int, int], now: datetime
) -> Counter[str]:
    report: Counter[str] = Counter()
    rows = session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.webhook_id,
            WebhookDelivery.event_type,
            WebhookDelivery.payload,
            WebhookDelivery.created_at,
            WebhookEndpoint.id,
            WebhookEndpoint.url,
            WebhookEndpoint.secret,
            WebhookEndpoint.enabled,
        )
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .where(WebhookDelivery.id.in_(list(claimed)))
        .order_by(WebhookDelivery.id)
    ).all()
    batch: list[tuple[int, int, transport.Request]] = []
    for delivery_id, webhook_id, event_type, payload, created_at, endpoint_id, url, secret, enabled in rows:
        if not enabled:  # turned off after this delivery was queued
            deliveries.fail_unsent(session, delivery_id, "not sent: the endpoint is disabled")
            report["skipped"] += 1
            continue
        data = signing.body(event_type, created_at, payload)
        # The signature's timestamp is read from the real clock, not the schedule's (utcnow,
        # which tests pin): receivers compare it with their own clock and refuse a stale one.
        headers = signing.headers(secret, webhook_id, data, datetime.now(UTC))
        batch.append((delivery_id, endpoint_id, transport.Request(url, headers, data.encode())))
    session.commit()
    answers = sender.send([request for _, _, request in batch])
    gone: dict[int, str] = {}
    for (delivery_id, endpoint_id, _), answer in zip(batch, answers, strict=True):
        outcome = deliveries.record(session, delivery_id, claimed[delivery_id], answer, now)
        session.commit()
        report[outcome] += 1
        if outcome == deliveries.GONE:
            gone[endpoint_id] = (
                f"it answered 410 Gone at {now:%Y-%m-%d %H:%M:%S} UTC (delivery {delivery_id})"
            )
    for endpoint_id, reason in gone.items():
        deliveries.disable_endpoint(session, endpoint_id, reason, now)
        session.commit()
    return report
