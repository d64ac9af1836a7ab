"""Sending a run: freeze its audience, send batches of claimed ledger rows, finish the run.

A batch claims its rows with one conditional UPDATE under a fresh token and a lease it renews,
checks the campaign's own conditions (cancelled, template approval, variables), then hands
rows to the provider a group at a time: each group asks the send policy (DND, the 24-hour
window) right before it is marked handed (committed), and its answers are recorded right
after, so a batch killed half-way leaves rows whose fate recovery can settle without sending
anything twice (`delivery.recover_stale_claims`), once the lease has run out.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from chatman.campaigns import variants
from chatman.campaigns.audience import freeze_page
from chatman.campaigns.lifecycle import campaign_step
from chatman.campaigns.models import ENROLLING_KINDS, Campaign, CampaignRun, CampaignStep
from chatman.contacts.models import Contact
from chatman.ledger import sending, states
from chatman.ledger.models import Message
from chatman.messaging import links, policy, send_window
from chatman.messaging.delivery import AMBIGUOUS_HOLD, record_answers
from chatman.messaging.models import Template
from chatman.messaging.providers import OutboundMessage, Provider, send_safely, status_callback_for
from chatman.messaging.ratelimit import RateLimiter
from chatman.messaging.rendering import MissingVariable, render, resolve
from chatman.timeutils import utcnow, zone_of

BATCH_SIZE = 250
# Rows handed to the provider between two commits: what a crash can leave undecided.
GROUP_SIZE = 100


@dataclass(frozen=True)
class SendOptions:
    status_callback: str | None = None
    concurrency: int = 32
    skip_us_marketing: bool = True
    cap: policy.Cap | None = None
    # (public base url, secret key): links go out tracked; None: as written.
    links: tuple[str, str] | None = None


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
    held: int = 0  # outside their send window, until it opens
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
    """Claim these rows (under a lease kept while the batch runs), check the campaign's own
    conditions, then send group by group, each group asking the send policy right before it
    leaves. Rows the provider did not answer stay claimed, held for recovery to settle."""
    options = options or SendOptions()
    now = now or utcnow()
    token = str(uuid.uuid4())
    result = BatchResult()
    if not sending.claim(session, message_ids, token, now):
        session.commit()
        return result
    session.commit()  # the claim and its lease are durable before anything leaves
    with sending.keep_lease(session.get_bind(), token) as lease:
        _send_claimed(session, token, lease, message_ids, provider, limiter, options, now, result)
    # Rows the provider did not answer: it settles them meanwhile; then recovery asks.
    sending.end_lease(session, token, hold_until=utcnow() + AMBIGUOUS_HOLD if result.ambiguous else None)
    session.commit()
    return result


def _send_claimed(
    session: Session,
    token: str,
    lease: sending.Lease,
    message_ids: Sequence[int],
    provider: Provider,
    limiter: RateLimiter | None,
    options: SendOptions,
    now: datetime,
    result: BatchResult,
) -> None:
    # By id first: claim_token has no index, and a scan of the ledger per batch grows with it.
    rows = _rows(session, Message.id.in_(message_ids), Message.claim_token == token)
    result.runs = {r.run_id for r in rows}
    session.execute(update(CampaignRun).where(CampaignRun.id.in_(result.runs)).values(progress_at=now))
    templates = _templates(session, rows)
    tracker = links.Tracker(session, *options.links) if options.links else None
    skipped: dict[str, list[sending.ClaimedRow]] = defaultdict(list)
    paused: list[int] = []
    outgoing: list[Outgoing] = []
    windows: dict[int, send_window.SendWindow | None] = {}
    for row in rows:
        claimed = sending.ClaimedRow(
            row.id, row.campaign_id, row.run_id, row.step_id, row.contact_id, row.attempts
        )
        if row.Contact is None:  # deleted since the audience was frozen
            skipped["contact_deleted"].append(claimed)
        elif row.campaign_status == "paused":
            paused.append(row.id)
        else:
            message = compose(row, templates, options, tracker)
            if isinstance(message, str):
                skipped[message].append(claimed)
            else:
                if row.campaign_id not in windows:  # parsed once per campaign, not per row
                    windows[row.campaign_id] = send_window.from_stored(row.send_window)
                outgoing.append(_outgoing(claimed, message, row, templates, windows[row.campaign_id]))
    result.released = sending.release(session, token, paused, refund=True)
    for reason, group in skipped.items():
        result.skipped += sending.skip(session, token, group, reason)
    session.commit()

    with ThreadPoolExecutor(options.concurrency) as pool:
        for start in range(0, len(outgoing), GROUP_SIZE):
            group = outgoing[start : start + GROUP_SIZE]
            while group := _hold_outside_window(session, token, group, result):
                granted = limiter.acquire(len(group)) if limiter else len(group)
                _send_group(session, token, lease, group[:granted], provider, pool, options.cap, result)
                group = group[granted:]


@dataclass(frozen=True)
class Outgoing:
    row: sending.ClaimedRow
    message: OutboundMessage
    free_text: bool
    zone: str  # the contact's clock (theirs, else the campaign's)
    window: send_window.SendWindow | None
    marketing: bool  # counts toward the contact's marketing cap


def _outgoing(
    claimed: sending.ClaimedRow,
    message: OutboundMessage,
    row,
    templates: dict[int, Template],
    window: send_window.SendWindow | None,
) -> Outgoing:
    template_id = row.CampaignStep.template_id
    return Outgoing(
        claimed,
        message,
        free_text=template_id is None,
        zone=zone_of(row.Contact.timezone, row.campaign_timezone),
        window=window,
        marketing=template_id is None or templates[template_id].category == "marketing",
    )


def _hold_outside_window(
    session: Session, token: str, group: list[Outgoing], result: BatchResult
) -> list[Outgoing]:
    """Hold the rows whose send window is closed now (until it opens, for the clock to
    release); the rest go on. Asked before the rate limit, which held rows must not use up."""
    now = utcnow()
    opens: dict[int, datetime] = {}
    for window in {o.window for o in group} - {None}:
        opens |= policy.held([(o.row.id, o.zone) for o in group if o.window == window], now, window)
    if not opens:
        return group
    by_time: dict[datetime, list[sending.ClaimedRow]] = defaultdict(list)
    for o in group:
        if o.row.id in opens:
            by_time[opens[o.row.id]].append(o.row)
    for until, rows in by_time.items():
        result.held += sending.defer(session, token, rows, until)
    session.commit()
    return [o for o in group if o.row.id not in opens]


def _send_group(
    session: Session,
    token: str,
    lease: sending.Lease,
    group: list[Outgoing],
    provider: Provider,
    pool: ThreadPoolExecutor,
    cap: policy.Cap | None,
    result: BatchResult,
) -> None:
    # The send policy, right before the hand-over: a STOP that arrived, or a window that
    # closed, while the batch waited for its turn under the rate limit is honoured.
    now = utcnow()
    marketing = [(o.row.id, o.row.contact_id, o.zone) for o in group if o.marketing]
    # First in the transaction: it locks the contacts until the hand-over is committed.
    over_cap = policy.capped(session, marketing, now, cap)
    blocked: dict[int, str] = {}
    for free_text in {o.free_text for o in group}:
        contacts = {o.row.contact_id for o in group if o.free_text == free_text}
        blocked |= policy.blocked(session, contacts, now, free_text=free_text)
    reasons = {
        o.row.id: blocked.get(o.row.contact_id, "capped" if o.row.id in over_cap else None) for o in group
    }
    for reason in set(reasons.values()) - {None}:
        rows = [o.row for o in group if reasons[o.row.id] == reason]
        result.skipped += sending.skip(session, token, rows, reason)
    group = [o for o in group if reasons[o.row.id] is None]
    owned = sending.hand(
        session, token, [o.row.id for o in group], now, marketing=[o.row.id for o in group if o.marketing]
    )
    session.commit()
    group = [o for o in group if o.row.id in owned]
    answers = list(pool.map(lambda o: send_safely(provider, o.message, lease), group))
    recorded = record_answers(session, token, [(o.row, a) for o, a in zip(group, answers, strict=True)])
    session.commit()
    result.submitted += recorded.submitted
    result.failed += recorded.failed
    result.retry += recorded.retry
    result.retry_attempts = max(result.retry_attempts, recorded.retry_attempts)
    result.ambiguous += recorded.ambiguous


def _rows(session: Session, *where) -> list:
    """Campaign rows with what composing their message needs (the contact, None once deleted)."""
    return session.execute(
        select(
            *sending.CLAIMED,
            Contact,
            CampaignStep,
            Campaign.status.label("campaign_status"),
            Campaign.utm_campaign,
            Campaign.send_window,
            Campaign.timezone.label("campaign_timezone"),
            CampaignRun.context,
        )
        .outerjoin(Contact, Contact.id == Message.contact_id)
        .join(CampaignStep, CampaignStep.id == Message.step_id)
        .join(Campaign, Campaign.id == Message.campaign_id)
        .join(CampaignRun, CampaignRun.id == Message.run_id)
        .where(*where)
        .order_by(Message.id)
    ).all()


def _templates(session: Session, rows: Sequence) -> dict[int, Template]:
    wanted = {r.CampaignStep.template_id for r in rows} - {None}
    return (
        {t.id: t for t in session.scalars(select(Template).where(Template.id.in_(wanted)))} if wanted else {}
    )


def compose(
    row, templates: dict[int, Template], options: SendOptions, tracker: links.Tracker | None = None
) -> OutboundMessage | str:
    """The message this row sends, or why it must not go: the campaign's own conditions
    (cancelled, template not approved, US marketing, a variable the contact lacks). DND and the
    window are the send policy's, asked right before the message leaves."""
    step = row.CampaignStep
    if row.campaign_status == "cancelled":
        return "cancelled"
    callback = status_callback_for(options.status_callback, row.id)
    contact = row.Contact
    tag_links = links.rewriter(tracker, row.campaign_id, row.id, row.utm_campaign)
    if step.template_id is None:
        return OutboundMessage(to=contact.phone, body=tag_links(step.body), status_callback=callback)
    template = templates[step.template_id]
    if template.status != "approved":
        return "template_not_approved"
    if options.skip_us_marketing and template.category == "marketing" and contact.phone.startswith("+1"):
        return "us_marketing"
    try:
        values = {k: tag_links(v) for k, v in resolve(template.variables or {}, contact, row.context).items()}
    except MissingVariable:
        return "missing_variable"
    if template.content_sid:
        return OutboundMessage(
            to=contact.phone,
            content_sid=template.content_sid,
            content_variables=values,
            status_callback=callback,
        )
    return OutboundMessage(
        to=contact.phone, body=tag_links(render(template.body, values)), status_callback=callback
    )


def sent_texts(
    session: Session, claimed: Sequence[sending.ClaimedRow], options: SendOptions | None = None
) -> dict[int, str | None]:
    """What these campaign rows say, as the provider shows it (None for a content template,
    which the provider renders): recovery compares it with what the provider lists."""
    rows = _rows(session, Message.id.in_([c.id for c in claimed]))
    templates = _templates(session, rows)
    options = SendOptions(skip_us_marketing=False, links=options.links if options else None)
    tracker = links.Tracker(session, *options.links) if options.links else None
    texts: dict[int, str | None] = {}
    for row in rows:
        message = compose(row, templates, options, tracker) if row.Contact else None
        texts[row.id] = message.body if isinstance(message, OutboundMessage) else None
    return texts


def finish_run(session: Session, run_id: int, now: datetime | None = None) -> bool:
    """Complete a sending run once every row is decided (none pending or claimed), and its
    campaign once every run is over. Delivery reports keep arriving afterwards."""
    now = now or utcnow()
    undecided = session.scalar(
        select(exists().where(Message.run_id == run_id, Message.status.in_(states.UNDECIDED)))
    )
    run = session.get(CampaignRun, run_id)
    campaign = session.get(Campaign, run.campaign_id)
    if undecided or campaign.kind in ENROLLING_KINDS:
        return False  # a drip's run takes new rows while contacts go on; it ends with the campaign
    if variants.phase(run) == "testing":  # the test group is done: the winner is picked later
        session.execute(
            update(CampaignRun)
            .where(CampaignRun.id == run_id, CampaignRun.status == "sending")
            .values(status="testing", progress_at=now)
        )
        session.commit()
        return False
    moved = session.execute(
        update(CampaignRun)
        .where(CampaignRun.id == run_id, CampaignRun.status == "sending")
        .values(status="completed", completed_at=now)
    ).rowcount
    # Triggered ones stay on; a recurring one ends with the run of its last occurrence.
    if moved and (
        campaign.kind == "one_time" or (campaign.kind == "recurring" and campaign.next_occurrence_at is None)
    ):
        still_open = exists().where(
            CampaignRun.campaign_id == run.campaign_id,
            CampaignRun.status.in_(("freezing", "sending", "testing")),
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
    undecided = exists().where(Message.run_id == CampaignRun.id, Message.status.in_(states.UNDECIDED))
    pending = exists().where(Message.run_id == CampaignRun.id, Message.status == states.PENDING)
    return list(
        session.scalars(
            select(CampaignRun.id)
            .join(Campaign, Campaign.id == CampaignRun.campaign_id)
            .where(
                Campaign.status == "running",
                CampaignRun.status.in_(("freezing", "sending")),
                func.coalesce(CampaignRun.progress_at, CampaignRun.created_at) < quiet_since,
                or_(
                    CampaignRun.status == "freezing",
                    pending,
                    and_(~undecided, Campaign.kind.not_in(ENROLLING_KINDS)),
                ),
            )
            .order_by(CampaignRun.id)
        )
    )


def release_held(session: Session, now: datetime, limit: int = 1000) -> dict[int, list[int]]:
    """Held rows of running campaigns whose send window has opened by `now`, put back to
    pending (committed); their ids by run, to send. A paused campaign's stay held."""
    running = Message.campaign_id.in_(select(Campaign.id).where(Campaign.status == "running"))
    released = sending.release_held(session, now, limit, where=[running])
    session.commit()
    return released
