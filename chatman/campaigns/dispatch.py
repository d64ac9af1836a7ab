"""Sending a run: freeze its audience, then send batches of claimed ledger rows.

A batch claims its rows with one conditional UPDATE (only pending rows, under a fresh
token), re-checks DND, the 24-hour window and template approval at send time, submits to
the provider concurrently under the sender's rate limit, and records each result with its
counter change. Rows another batch claimed are left alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from chatman.campaigns.audience import freeze_page
from chatman.campaigns.lifecycle import campaign_step
from chatman.campaigns.models import Campaign, CampaignRun, CampaignStep
from chatman.contacts.models import Contact
from chatman.ledger import counters, states
from chatman.ledger.models import Message
from chatman.ledger.status import apply_waiting
from chatman.messaging.models import Template
from chatman.messaging.providers import OPT_OUT_CODES, OutboundMessage, Provider, SendResult
from chatman.messaging.ratelimit import RateLimiter
from chatman.messaging.rendering import MissingVariable, render, resolve, tag_links
from chatman.timeutils import utcnow

BATCH_SIZE = 250
MAX_ATTEMPTS = 5
WINDOW = timedelta(hours=24)
CONCURRENCY = 16


def freeze_run(session: Session, run_id: int) -> int:
    """Freeze the whole audience page by page, committing each page; returns rows added."""
    run = session.get(CampaignRun, run_id)
    step = campaign_step(session, run.campaign_id)
    total = 0
    while added := freeze_page(session, run, step):
        session.commit()
        total += added
    if run.status == "freezing":
        run.status = "sending"
    session.commit()
    return total


def pending_batches(session: Session, run_id: int, size: int = BATCH_SIZE) -> Iterator[list[int]]:
    """Ids of a run's pending rows in batches, keyset-paginated."""
    last = 0
    while ids := list(
        session.scalars(
            select(Message.id)
            .where(Message.run_id == run_id, Message.status == states.PENDING, Message.id > last)
            .order_by(Message.id)
            .limit(size)
        )
    ):
        yield ids
        last = ids[-1]


@dataclass
class BatchResult:
    submitted: int = 0
    skipped: int = 0
    failed: int = 0
    retry: list[int] = field(default_factory=list)


def _transition(session: Session, row, status: str, **values) -> None:
    """Move one claimed row and change its counters in the same transaction."""
    session.execute(
        update(Message).where(Message.id == row.id).values(status=status, claim_token=None, **values)
    )
    submitted = values.get("submitted_at") is not None
    before = counters.metrics_of(states.CLAIMED, None, None, False)
    after = counters.metrics_of(status, values.get("skip_reason"), values.get("error_code"), submitted)
    counters.apply(session, [(row.campaign_id, row.run_id, row.step_id, counters.delta(before, after))])


def send_batch(
    session: Session,
    message_ids: list[int],
    provider: Provider,
    limiter: RateLimiter | None = None,
    status_callback: str | None = None,
    now: datetime | None = None,
) -> BatchResult:
    now = now or utcnow()
    token = str(uuid.uuid4())
    session.execute(
        update(Message)
        .where(Message.id.in_(message_ids), Message.status == states.PENDING)
        .values(status=states.CLAIMED, claim_token=token, claimed_at=now, attempts=Message.attempts + 1)
    )
    session.commit()  # the claim is durable before anything leaves
    rows = session.execute(
        select(
            Message.id,
            Message.campaign_id,
            Message.run_id,
            Message.step_id,
            Message.attempts,
            Contact,
            CampaignStep,
            Campaign.status.label("campaign_status"),
            Campaign.utm_campaign,
        )
        .join(Contact, Contact.id == Message.contact_id)
        .join(CampaignStep, CampaignStep.id == Message.step_id)
        .join(Campaign, Campaign.id == Message.campaign_id)
        .where(Message.claim_token == token)
        .order_by(Message.id)
    ).all()
    templates = {
        t.id: t
        for t in session.scalars(
            select(Template).where(Template.id.in_({r.CampaignStep.template_id for r in rows} - {None}))
        )
    }
    result = BatchResult()
    outgoing: list[tuple] = []
    for row in rows:
        contact, step = row.Contact, row.CampaignStep
        if row.campaign_status == "paused":
            session.execute(
                update(Message).where(Message.id == row.id).values(status=states.PENDING, claim_token=None)
            )
            continue
        reason = _skip_reason(row, contact, step, templates, now)
        message = None
        if reason is None:
            try:
                message = _outbound(contact, step, templates, row.utm_campaign, status_callback)
            except MissingVariable:
                reason = "missing_variable"
        if reason is not None:
            _transition(session, row, states.SKIPPED, skip_reason=reason)
            result.skipped += 1
        else:
            outgoing.append((row, message))
    session.commit()

    for (row, _), sent in zip(outgoing, _submit(provider, [m for _, m in outgoing], limiter), strict=True):
        if sent.ok:
            _transition(session, row, states.SUBMITTED, provider_sid=sent.sid, submitted_at=utcnow())
            apply_waiting(session, sent.sid)
            result.submitted += 1
        elif sent.retryable and row.attempts < MAX_ATTEMPTS:
            session.execute(
                update(Message)
                .where(Message.id == row.id)
                .values(status=states.PENDING, claim_token=None, error_code=sent.error_code)
            )
            result.retry.append(row.id)
        else:
            _transition(
                session,
                row,
                states.FAILED,
                error_code=sent.error_code,
                error_message=sent.error_message,
                failed_at=utcnow(),
            )
            if sent.error_code in OPT_OUT_CODES:
                session.execute(
                    update(Contact)
                    .where(Contact.id == row.Contact.id, Contact.dnd.is_(False))
                    .values(dnd=True, dnd_reason="opt_out", dnd_at=now)
                )
            result.failed += 1
    session.commit()
    return result


def _skip_reason(
    row, contact: Contact, step: CampaignStep, templates: dict[int, Template], now: datetime
) -> str | None:
    if row.campaign_status == "cancelled":
        return "cancelled"
    if contact.dnd:
        return "dnd"
    if step.template_id is None:
        if contact.last_inbound_at is None or now - contact.last_inbound_at > WINDOW:
            return "outside_window"
    elif templates[step.template_id].status != "approved":
        return "template_not_approved"
    return None


def _outbound(
    contact: Contact,
    step: CampaignStep,
    templates: dict[int, Template],
    utm: str | None,
    status_callback: str | None,
) -> OutboundMessage:
    if step.template_id is None:
        return OutboundMessage(
            to=contact.phone, body=tag_links(step.body, utm), status_callback=status_callback
        )
    template = templates[step.template_id]
    values = resolve(template.variables or {}, contact)
    values = {k: tag_links(v, utm) for k, v in values.items()}
    if template.content_sid:
        return OutboundMessage(
            to=contact.phone,
            content_sid=template.content_sid,
            content_variables=values,
            status_callback=status_callback,
        )
    return OutboundMessage(
        to=contact.phone, body=tag_links(render(template.body, values), utm), status_callback=status_callback
    )


def _submit(
    provider: Provider, messages: list[OutboundMessage], limiter: RateLimiter | None
) -> list[SendResult]:
    """Send concurrently, in order of results, within the sender's rate."""
    results: list[SendResult] = []
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        start = 0
        while start < len(messages):
            granted = limiter.acquire(len(messages) - start) if limiter else len(messages) - start
            results += pool.map(provider.send, messages[start : start + granted])
            start += granted
    return results


def run_finished(session: Session, run_id: int) -> bool:
    """True once no row of the run is waiting to be sent or in a send."""
    waiting = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.run_id == run_id, Message.status.in_((states.PENDING, states.CLAIMED)))
    )
    return waiting == 0
