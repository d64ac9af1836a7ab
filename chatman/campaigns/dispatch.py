"""Sending a run: freeze its audience, send batches of claimed ledger rows, finish the run.

A batch claims its rows with one conditional UPDATE under a fresh token, re-checks DND, the
24-hour window and template approval at send time, then hands rows to the provider a group
at a time: each group is marked handed (committed) before the provider call and its answers
are recorded right after, so a batch killed half-way leaves rows whose fate recovery can
settle without sending anything twice (`recover_stale_claims`).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from chatman.campaigns.audience import freeze_page
from chatman.campaigns.lifecycle import campaign_step
from chatman.campaigns.models import Campaign, CampaignRun, CampaignStep
from chatman.contacts.dnd import set_dnd
from chatman.contacts.models import Contact
from chatman.ledger import sending, states
from chatman.ledger.models import Message
from chatman.messaging.models import Template
from chatman.messaging.providers import OPT_OUT_CODES, OutboundMessage, Provider
from chatman.messaging.ratelimit import RateLimiter
from chatman.messaging.rendering import MissingVariable, render, resolve, tag_links
from chatman.timeutils import utcnow

BATCH_SIZE = 250
# Rows handed to the provider between two commits: what a crash can leave undecided.
GROUP_SIZE = 100
MAX_ATTEMPTS = 5
WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class SendOptions:
    status_callback: str | None = None
    concurrency: int = 32
    skip_us_marketing: bool = True


def freeze_run(session: Session, run_id: int, now: datetime | None = None) -> int:
    """Freeze the whole audience page by page, committing each page; returns rows added."""
    run = session.get(CampaignRun, run_id)
    step = campaign_step(session, run.campaign_id)
    total = 0
    while run.status == "freezing" and (added := freeze_page(session, run, step)):
        session.commit()
        session.refresh(run)  # a cancel stops the freeze
        total += added
    if run.status == "cancelled":
        sending.skip_pending(session, [run.id], "cancelled")
    elif run.status == "freezing":
        run.status = "sending"
    run.progress_at = now or utcnow()
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
        )
        .join(Contact, Contact.id == Message.contact_id)
        .join(CampaignStep, CampaignStep.id == Message.step_id)
        .join(Campaign, Campaign.id == Message.campaign_id)
        .where(Message.claim_token == token)
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
        if row.campaign_status == "paused":
            paused.append(row.id)
            continue
        reason = skip_reason(row.campaign_status, row.Contact, row.CampaignStep, templates, now, options)
        if reason is None:
            try:
                message = _outbound(row.Contact, row.CampaignStep, templates, row.utm_campaign, options)
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
    owned = sending.hand(session, token, [row.id for row, _ in group], utcnow())
    session.commit()
    group = [(row, message) for row, message in group if row.id in owned]
    answers = list(pool.map(provider.send, [message for _, message in group]))
    submitted, retry, failed = [], [], []
    for (row, _), answer in zip(group, answers, strict=True):
        if answer.ambiguous:  # stays claimed and handed until the provider is asked
            result.ambiguous.append(row.id)
        elif answer.ok:
            submitted.append((row, answer.sid))
        elif answer.retryable and row.attempts < MAX_ATTEMPTS:
            retry.append(sending.Failure(row, answer.error_code, answer.error_message))
        else:
            failed.append(sending.Failure(row, answer.error_code, answer.error_message))
    recorded = sending.record_results(session, token, submitted, retry, failed, now=utcnow())
    set_dnd(session, [f.row.contact_id for f in failed if f.code in OPT_OUT_CODES], "opt_out")
    session.commit()
    result.submitted += recorded.submitted
    result.failed += recorded.failed
    result.retry += [f.row.id for f in retry]
    result.retry_attempts = max([result.retry_attempts, *(f.row.attempts for f in retry)])


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
) -> OutboundMessage:
    callback = options.status_callback
    if step.template_id is None:
        return OutboundMessage(to=contact.phone, body=tag_links(step.body, utm), status_callback=callback)
    template = templates[step.template_id]
    values = {k: tag_links(v, utm) for k, v in resolve(template.variables or {}, contact).items()}
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
    if moved:
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


def stalled_runs(session: Session, quiet_since: datetime) -> list[int]:
    """Sending runs of running campaigns with pending rows and no progress since
    `quiet_since`: their batch jobs were lost (Redis restarted, a worker died)."""
    return list(
        session.scalars(
            select(CampaignRun.id)
            .join(Campaign, Campaign.id == CampaignRun.campaign_id)
            .where(
                CampaignRun.status == "sending",
                Campaign.status == "running",
                (CampaignRun.progress_at < quiet_since) | CampaignRun.progress_at.is_(None),
                exists().where(Message.run_id == CampaignRun.id, Message.status == states.PENDING),
            )
        )
    )


def mark_progress(session: Session, run_id: int, now: datetime) -> None:
    session.execute(update(CampaignRun).where(CampaignRun.id == run_id).values(progress_at=now))


@dataclass
class Recovery:
    released: int = 0  # claimed but never handed over: back to pending
    found: int = 0  # handed over, and the provider has it: recorded as submitted
    resent: int = 0  # handed over, the provider never got it: back to pending
    unresolved: int = 0  # the provider could not be asked: left for the next try
    abandoned: int = 0  # its batches died MAX_ATTEMPTS times: failed, not tried again
    runs: set[int] = field(default_factory=set)


def recover_stale_claims(
    session: Session,
    provider: Provider,
    claimed_before: datetime,
    ids: Sequence[int] | None = None,
    lookups: int = 8,
) -> Recovery:
    """Settle claimed rows (all claimed before `claimed_before`, or just `ids`) that no batch
    will finish: never handed -> pending; handed -> ask the provider whether it has the
    message (then it is submitted) or not (then it goes back to pending, to be sent)."""
    report = Recovery()
    seen: set[int] = set()
    while stale := [
        s for s in sending.stale_claims(session, claimed_before, ids=ids) if s.row.id not in seen
    ]:
        seen.update(s.row.id for s in stale)
        report.runs.update(s.row.run_id for s in stale)
        by_token: dict[str, list[int]] = defaultdict(list)
        for s in stale:
            if s.handed_at is None and s.row.attempts < MAX_ATTEMPTS:
                by_token[s.token].append(s.row.id)
            elif s.handed_at is None:
                report.abandoned += _abandon(session, s)
        for token, ids in by_token.items():
            report.released += sending.release(session, token, ids)
        session.commit()
        handed = [s for s in stale if s.handed_at is not None]
        phones = dict(
            session.execute(
                select(Contact.id, Contact.phone).where(Contact.id.in_({s.row.contact_id for s in handed}))
            ).all()
        )

        with ThreadPoolExecutor(lookups) as pool:
            answers = list(
                pool.map(
                    _ask,
                    [provider] * len(handed),
                    [phones[h.row.contact_id] for h in handed],
                    [h.handed_at for h in handed],
                )
            )
        candidates = {sid for found in answers if found for sid in found}
        taken = set(session.scalars(select(Message.provider_sid).where(Message.provider_sid.in_(candidates))))
        for claim, found in zip(handed, answers, strict=True):
            if found is None:
                report.unresolved += 1
                continue
            sid = next((s for s in found if s not in taken), None)
            if sid is not None:
                taken.add(sid)
                report.found += sending.record_results(
                    session, claim.token, submitted=[(claim.row, sid)], now=utcnow()
                ).submitted
            elif claim.row.attempts >= MAX_ATTEMPTS:
                report.abandoned += _abandon(session, claim)
            else:
                report.resent += sending.record_results(
                    session, claim.token, retry=[sending.Failure(claim.row, None)], now=utcnow()
                ).retry
        session.commit()
    return report


def _abandon(session: Session, claim: sending.StaleClaim) -> int:
    """A row whose every batch died (it may be what kills them): fail it, visibly."""
    failure = sending.Failure(claim.row, "abandoned", f"its send batch died {claim.row.attempts} times")
    return sending.record_results(session, claim.token, failed=[failure], now=utcnow()).failed


def _ask(provider: Provider, phone: str, since: datetime) -> list[str] | None:
    try:
        return provider.lookup(phone, since)
    except Exception:  # the provider cannot be asked now: the next recovery asks again
        return None
