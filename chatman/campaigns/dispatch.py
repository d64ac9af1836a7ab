"""Sending a run: freeze its audience, send batches of claimed ledger rows, finish the run.

A batch claims its rows with one conditional UPDATE under a fresh token, re-checks DND, the
24-hour window and template approval at send time, then hands rows to the provider a group
at a time: each group is marked handed (committed) before the provider call and its answers
are recorded right after, so a batch killed half-way leaves rows whose fate recovery can
settle without sending anything twice (`recover_stale_claims`).
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.orm import Session

from chatman.campaigns.audience import freeze_page
from chatman.campaigns.lifecycle import campaign_step
from chatman.campaigns.models import Campaign, CampaignRun, CampaignStep
from chatman.contacts.models import Contact
from chatman.ledger import sending, states
from chatman.ledger.models import Message
from chatman.messaging.delivery import record_answers
from chatman.messaging.models import Template
from chatman.messaging.providers import OutboundMessage, Provider
from chatman.messaging.ratelimit import RateLimiter
from chatman.messaging.rendering import MissingVariable, render, resolve, tag_links
from chatman.timeutils import utcnow

BATCH_SIZE = 250
# Rows handed to the provider between two commits: what a crash can leave undecided.
GROUP_SIZE = 100
WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class SendOptions:
    status_callback: str | None = None
    concurrency: int = 32
    skip_us_marketing: bool = True


def freeze_run(
    session: Session, run_id: int, now: datetime | None = None, until: float | None = None
) -> bool:
    """Freeze the audience page by page, committing each page, until it is all in or the
    monotonic clock passes `until` (the caller hands on to a job that resumes). True once frozen."""
    run = session.get(CampaignRun, run_id)
    step = campaign_step(session, run.campaign_id)
    while run.status == "freezing" and freeze_page(session, run, step):
        session.commit()
        session.refresh(run)  # a cancel stops the freeze
        if until is not None and time.monotonic() > until and run.status == "freezing":
            return False
    if run.status == "cancelled":
        sending.skip_pending(session, [run.id], "cancelled")
    elif run.status == "freezing":
        run.status = "sending"
    run.progress_at = now or utcnow()
    session.commit()
    return True


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
    released: int = 0  # put back to pending by a pause
    retry: list[int] = field(default_factory=list)
    retry_attempts: int = 0  # the most tries any of `retry` has had
    ambiguous: list[int] = field(default_factory=list)  # no answer: to be looked up later
    runs: set[int] = field(default_factory=set)


def send_batch(
    session: Session,
    message_ids: Sequence[int],
    provider: Provider,
    limiter: RateLimiter | None = None,
    options: SendOptions | None = None,
    now: datetime | None = None,
) -> BatchResult:
    options = options or SendOptions()
    now = now or utcnow()
    token = str(uuid.uuid4())
    result = BatchResult()
    if not sending.claim(session, message_ids, token, now):
        session.commit()
        return result
    rows = session.execute(
        select(
            Message.id,
            Message.campaign_id,
            Message.run_id,
            Message.step_id,
            Message.contact_id,
            Message.attempts,
            Contact,
            CampaignStep,
            Campaign.status.label("campaign_status"),
            Campaign.utm_campaign,
            CampaignRun.context,
        )
        .outerjoin(Contact, Contact.id == Message.contact_id)
        .join(CampaignStep, CampaignStep.id == Message.step_id)
        .join(Campaign, Campaign.id == Message.campaign_id)
        .join(CampaignRun, CampaignRun.id == Message.run_id)
        # By id first: claim_token has no index, and a scan of the ledger per batch grows with it.
        .where(Message.id.in_(message_ids), Message.claim_token == token)
        .order_by(Message.id)
    ).all()
    result.runs = {r.run_id for r in rows}
    session.execute(update(CampaignRun).where(CampaignRun.id.in_(result.runs)).values(progress_at=now))
    session.commit()  # the claim is durable before anything leaves

    templates = {
        t.id: t
        for t in session.scalars(
            select(Template).where(Template.id.in_({r.CampaignStep.template_id for r in rows} - {None}))
        )
    }
    skipped: dict[str, list[sending.ClaimedRow]] = defaultdict(list)
    paused: list[int] = []
    outgoing: list[tuple[sending.ClaimedRow, OutboundMessage]] = []
    for row in rows:
        claimed = sending.ClaimedRow(
            row.id, row.campaign_id, row.run_id, row.step_id, row.contact_id, row.attempts
        )
        if row.Contact is None:  # deleted since the audience was frozen
            skipped["contact_deleted"].append(claimed)
            continue
        if row.campaign_status == "paused":
            paused.append(row.id)
            continue
        reason = skip_reason(row.campaign_status, row.Contact, row.CampaignStep, templates, now, options)
        if reason is None:
            try:
                message = _outbound(
                    row.Contact, row.CampaignStep, templates, row.utm_campaign, options, row.context
                )
            except MissingVariable:
                reason = "missing_variable"
        if reason is None:
            outgoing.append((claimed, message))
        else:
            skipped[reason].append(claimed)
    result.released = sending.release(session, token, paused, refund=True)
    for reason, group in skipped.items():
        result.skipped += sending.skip(session, token, group, reason)
    session.commit()

    with ThreadPoolExecutor(options.concurrency) as pool:
        for start in range(0, len(outgoing), GROUP_SIZE):
            group = outgoing[start : start + GROUP_SIZE]
            while group:
                granted = limiter.acquire(len(group)) if limiter else len(group)
                _send_group(session, token, group[:granted], provider, pool, result)
                group = group[granted:]
    return result


def _send_group(
    session: Session,
    token: str,
    group: list[tuple[sending.ClaimedRow, OutboundMessage]],
    provider: Provider,
    pool: ThreadPoolExecutor,
    result: BatchResult,
) -> None:
    # DND is checked again right before the hand-over: a STOP that arrived while the batch
    # waited for its turn under the rate limit is honoured.
    opted_out = set(
        session.scalars(
            select(Contact.id).where(
                Contact.id.in_({row.contact_id for row, _ in group}), Contact.dnd.is_(True)
            )
        )
    )
    if opted_out:
        result.skipped += sending.skip(
            session, token, [row for row, _ in group if row.contact_id in opted_out], "dnd"
        )
        group = [(row, message) for row, message in group if row.contact_id not in opted_out]
    owned = sending.hand(session, token, [row.id for row, _ in group], utcnow())
    session.commit()
    group = [(row, message) for row, message in group if row.id in owned]
    answers = list(pool.map(provider.send, [message for _, message in group]))
    recorded = record_answers(session, token, [(row, a) for (row, _), a in zip(group, answers, strict=True)])
    session.commit()
    result.submitted += recorded.submitted
    result.failed += recorded.failed
    result.retry += recorded.retry
    result.retry_attempts = max(result.retry_attempts, recorded.retry_attempts)
    result.ambiguous += recorded.ambiguous


def skip_reason(
    campaign_status: str,
    contact: Contact,
    step: CampaignStep,
    templates: dict[int, Template],
    now: datetime,
    options: SendOptions,
) -> str | None:
    """Why this contact must not get this step now, or None. Checked at send time."""
    if campaign_status == "cancelled":
        return "cancelled"
    if contact.dnd:
        return "dnd"
    if step.template_id is None:
        if contact.last_inbound_at is None or now - contact.last_inbound_at > WINDOW:
            return "outside_window"
        return None
    template = templates[step.template_id]
    if template.status != "approved":
        return "template_not_approved"
    if options.skip_us_marketing and template.category == "marketing" and contact.phone.startswith("+1"):
        return "us_marketing"
    return None


def _outbound(
    contact: Contact,
    step: CampaignStep,
    templates: dict[int, Template],
    utm: str | None,
    options: SendOptions,
    context: dict | None = None,
) -> OutboundMessage:
    callback = options.status_callback
    if step.template_id is None:
        return OutboundMessage(to=contact.phone, body=tag_links(step.body, utm), status_callback=callback)
    template = templates[step.template_id]
    values = {k: tag_links(v, utm) for k, v in resolve(template.variables or {}, contact, context).items()}
    if template.content_sid:
        return OutboundMessage(
            to=contact.phone,
            content_sid=template.content_sid,
            content_variables=values,
            status_callback=callback,
        )
    return OutboundMessage(
        to=contact.phone, body=tag_links(render(template.body, values), utm), status_callback=callback
    )


def finish_run(session: Session, run_id: int, now: datetime | None = None) -> bool:
    """Complete a sending run once every row is decided (none pending or claimed), and its
    campaign once every run is over. Delivery reports keep arriving afterwards."""
    now = now or utcnow()
    undecided = session.scalar(
        select(exists().where(Message.run_id == run_id, Message.status.in_((states.PENDING, states.CLAIMED))))
    )
    if undecided:
        return False
    run = session.get(CampaignRun, run_id)
    moved = session.execute(
        update(CampaignRun)
        .where(CampaignRun.id == run_id, CampaignRun.status == "sending")
        .values(status="completed", completed_at=now)
    ).rowcount
    if moved and session.get(Campaign, run.campaign_id).kind == "one_time":  # triggered ones stay on
        still_open = exists().where(
            CampaignRun.campaign_id == run.campaign_id, CampaignRun.status.in_(("freezing", "sending"))
        )
        session.execute(
            update(Campaign)
            .where(Campaign.id == run.campaign_id, Campaign.status == "running", ~still_open)
            .values(status="completed", completed_at=now)
        )
    session.commit()
    return bool(moved)


def quiet_runs(session: Session, quiet_since: datetime) -> list[int]:
    """Runs of running campaigns that have not moved since `quiet_since` and still need a job:
    freezing, or sending with rows to send, or with every row decided but not yet finished.
    (Rows claimed by a dead batch are the recovery's.) The caller asks whether their jobs live."""
    undecided = exists().where(
        Message.run_id == CampaignRun.id, Message.status.in_((states.PENDING, states.CLAIMED))
    )
    pending = exists().where(Message.run_id == CampaignRun.id, Message.status == states.PENDING)
    return list(
        session.scalars(
            select(CampaignRun.id)
            .join(Campaign, Campaign.id == CampaignRun.campaign_id)
            .where(
                Campaign.status == "running",
                CampaignRun.status.in_(("freezing", "sending")),
                func.coalesce(CampaignRun.progress_at, CampaignRun.created_at) < quiet_since,
                or_(CampaignRun.status == "freezing", pending, ~undecided),
            )
            .order_by(CampaignRun.id)
        )
    )
