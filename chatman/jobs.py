"""RQ job entry points and the worker. Jobs stay thin: they call domain functions.

A job runs in a worker process without Flask, so it builds its database and Redis handles
from the settings once per process. Every job is safe to run twice: the database decides
what is done (claims, unique keys), never the queue. A job that may have much to do works for
a bounded time and hands on to a successor (chatman.queues), so none meets its timeout.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache, partial

from redis import Redis
from rq import SimpleWorker, Worker
from rq.job import get_current_job

from chatman import inbox, queues
from chatman.config import Settings, load_settings
from chatman.db import Database
from chatman.queues import DEFAULT, QUEUES, REPLIES, enqueue_once, hand_on

# Longer than any batch takes: RQ stops one that overruns (its lease then runs out, and
# recovery settles its rows).
BATCH_TIMEOUT_S = 600
RETRY_DELAY = timedelta(seconds=5)
# How long the status drain waits to gather a trickle of callbacks into one transaction:
# the ledger lags by this much, and a callback costs a third of the CPU.
GATHER_MS = 150
# How long a dispatch freezes an audience before handing on, and a simulator round posts.
DISPATCH_BUDGET_S = 60
SIMULATOR_BUDGET_S = 5
SQUASH_BUDGET_S = 20
STATUS_DRAIN = "status-drain"
SIMULATOR = "simulator-callbacks"
log = logging.getLogger(__name__)


def run_worker(connection: Redis, burst: bool = False) -> None:
    """Work the queues, with RQ's scheduler so delayed and retried jobs run.

    Jobs run in this process (SimpleWorker), not in a process forked for each: the fork's
    copy-on-write faults cost ~100 ms of CPU a job, half of a broadcast's CPU per message, and
    each fork started with cold connections to the database and the provider. Jobs hold no
    state between runs (each opens its own session), a job over its timeout is stopped by
    SIGALRM as before, and a worker that dies mid-job is what the clock's recovery is for.
    """
    import chatman.campaigns.dispatch  # noqa: F401
    import chatman.flows.engine  # noqa: F401
    import chatman.ledger.status  # noqa: F401
    import chatman.messaging.outbox  # noqa: F401

    _context()
    _provider()
    worker = SimpleWorker([queues.queue(connection, name) for name in QUEUES], connection=connection)
    stop = queues.keep_alive(connection, worker.name)
    try:
        worker.work(with_scheduler=True, burst=burst)
    finally:
        stop.set()


def worker_count(connection: Redis) -> int:
    return len(Worker.all(connection=connection))


@cache
def _context() -> tuple[Settings, Database, Redis]:
    settings = load_settings()
    return settings, Database(settings.database_url), Redis.from_url(settings.redis_url)


@cache
def _provider():
    from chatman.messaging.providers import make_provider

    settings, _, connection = _context()
    return make_provider(settings, connection)


def status_callback(settings: Settings) -> str:
    """Where providers report delivery statuses: our status webhook, at the public address."""
    return settings.public_base_url + "/webhooks/twilio/status"


def link_options(settings: Settings) -> tuple[str, str] | None:
    """Where tracked links point and what signs them, when links are tracked."""
    if not settings.track_links or not settings.secret_key:
        return None
    return settings.public_base_url, settings.secret_key


def _budget(default_s: float) -> float:
    """A monotonic deadline: a third of this job's timeout, or `default_s` outside a job."""
    me = get_current_job()
    timeout = me.timeout if me is not None and me.timeout and me.timeout > 0 else 3 * default_s
    return time.monotonic() + timeout / 3


def run_group(run_id: int) -> str:
    return f"run-{run_id}"


def enqueue_dispatch(connection: Redis, run_id: int, successor: bool = False) -> bool:
    """Enqueue a run's dispatch (freeze, then batches), unless one is queued or running; or,
    from a dispatch that ran out of time, the one that goes on from where it stopped."""
    enqueue = hand_on if successor else enqueue_once
    name = f"dispatch-run-{run_id}"
    return enqueue(
        connection, dispatch_run, name, run_id, group=run_group(run_id), job_timeout=3 * DISPATCH_BUDGET_S
    )


def campaign_preflight(session, campaign_id: int, settings: Settings):
    """What a launch now would do, with this install's messaging limit, US rule and cap."""
    from chatman.campaigns.preflight import preflight
    from chatman.messaging import policy

    return preflight(
        session,
        campaign_id,
        settings.sender_daily_limit,
        settings.skip_us_marketing,
        cap=policy.cap_of(settings),
    )


def launch_campaign(session, connection: Redis, campaign_id: int, settings: Settings):
    """Launch now, for the API and the admin alike: refuse (Invalid) when the pre-flight
    finds errors, else commit the launch and start its work. Returns the pre-flight report."""
    from chatman.campaigns import lifecycle
    from chatman.campaigns.models import ENROLLING_KINDS
    from chatman.errors import Invalid

    report = campaign_preflight(session, campaign_id, settings)
    if report.errors:
        raise Invalid.many({"preflight": report.errors})
    run = lifecycle.launch(session, campaign_id)
    session.commit()
    if run is not None:
        enqueue_dispatch(connection, run.id)
    elif lifecycle.get_campaign(session, campaign_id).kind in ENROLLING_KINDS:
        enqueue_sync(connection, campaign_id)
    return report


def change_campaign(session, connection: Redis, campaign_id: int, action: str, catch_up: bool = False):
    """Pause, resume or cancel, committed; a resume restarts the runs' dispatch (batches that
    met the pause put their rows back to pending)."""
    from chatman.campaigns import lifecycle

    campaign = lifecycle.set_status(session, campaign_id, action, catch_up=catch_up)
    session.commit()
    if action == "resume":
        for run_id in lifecycle.active_runs(session, campaign_id):
            enqueue_dispatch(connection, run_id)
    return campaign


def dispatch_run(run_id: int) -> int:
    """Freeze a run's audience and enqueue its send batches; safe to run again. A large
    audience is frozen over several jobs, each handing on to the next."""
    from chatman.campaigns.dispatch import finish_run, freeze_run, pending_batches
    from chatman.rules.engine import skipped_with_rules

    _, db, connection = _context()
    try:
        with db.sessionmaker() as session:
            if not freeze_run(session, run_id, until=_budget(DISPATCH_BUDGET_S)):
                enqueue_dispatch(connection, run_id, successor=True)
                return 0
            # The audience is frozen: its rows skipped at the freeze (DND) are final.
            enqueue_rules(connection, skipped_with_rules(session, run_id))
            batches = [(send_batch, (run_id, ids)) for ids in pending_batches(session, run_id)]
            queues.enqueue_tracked(connection, run_group(run_id), batches, job_timeout=BATCH_TIMEOUT_S)
            if not batches:
                finish_run(session, run_id)
        return len(batches)
    finally:
        queues.done(connection, run_group(run_id))


def enqueue_sends(connection: Redis, message_ids: list[int], runs: list[tuple[int, int]] = ()) -> None:
    """Send conversation messages (one job each, however often asked) and single-contact
    campaign starts, ahead of broadcasts."""
    for message_id in message_ids:
        enqueue_once(
            connection, send_message, f"message-{message_id}", message_id, queue_name=REPLIES, job_timeout=60
        )
    for run_id, message_id in runs:
        queues.enqueue_tracked(
            connection, run_group(run_id), [(send_batch, (run_id, [message_id]))], REPLIES, job_timeout=60
        )


def send_message(message_id: int) -> str:
    """Send one conversation message (a reply, a flow's question, a confirmation)."""
    from chatman.messaging.delivery import Answers
    from chatman.messaging.outbox import send_queued

    settings, db, connection = _context()
    provider = _provider()
    with db.sessionmaker() as session:
        outcome = send_queued(session, message_id, provider, status_callback(settings))
    if not isinstance(outcome, Answers):
        return outcome
    if outcome.retry:
        delay = RETRY_DELAY * 2 ** max(0, outcome.retry_attempts - 1)
        hand_on(
            connection,
            send_message,
            f"message-{message_id}",
            message_id,
            at=datetime.now(UTC) + delay,
            queue_name=REPLIES,
            job_timeout=60,
        )
    if outcome.submitted and provider.name == "simulator":
        enqueue_once(connection, simulate_callbacks, SIMULATOR)
    return "submitted" if outcome.submitted else "failed" if outcome.failed else "pending"


def send_batch(run_id: int, message_ids: list[int]) -> dict:
    from chatman.campaigns.dispatch import SendOptions, finish_run
    from chatman.campaigns.dispatch import send_batch as send
    from chatman.ledger.states import SKIPPED
    from chatman.messaging.policy import cap_of
    from chatman.messaging.ratelimit import RateLimiter
    from chatman.rules.engine import MOVED, messages_with_rules

    settings, db, connection = _context()
    provider = _provider()
    limiter = RateLimiter(connection, provider.sender, settings.sender_rate_per_s)
    options = SendOptions(
        status_callback=status_callback(settings),
        concurrency=settings.send_concurrency,
        skip_us_marketing=settings.skip_us_marketing,
        cap=cap_of(settings),
        links=link_options(settings),
    )
    try:
        with db.sessionmaker() as session:
            result = send(session, message_ids, provider, limiter, options)
            # A refusal at hand-over, callbacks that raced the send's answer (applied by the
            # send itself) and skips at send time (window, caps, DND) move rows past the status
            # drain: their rules look here.
            enqueue_rules(
                connection, messages_with_rules(session, ids=message_ids, statuses=(*MOVED, SKIPPED))
            )
            if result.retry:
                # Backing off: 5 s after a first failed try, then 10, 20, 40 s.
                delay = RETRY_DELAY * 2 ** max(0, result.retry_attempts - 1)
                queues.enqueue_tracked_in(
                    connection,
                    run_group(run_id),
                    delay,
                    send_batch,
                    run_id,
                    result.retry,
                    job_timeout=BATCH_TIMEOUT_S,
                )
            if not (result.retry or result.ambiguous):
                for run in result.runs:
                    finish_run(session, run)
    finally:
        queues.done(connection, run_group(run_id))
    if result.submitted and provider.name == "simulator":
        enqueue_once(connection, simulate_callbacks, SIMULATOR)
    return {
        "submitted": result.submitted,
        "skipped": result.skipped,
        "failed": result.failed,
        "released": result.released,
        "retry": len(result.retry),
    }


def enqueue_status_drain(connection: Redis, settings: Settings) -> bool:
    return enqueue_once(
        connection, apply_status_events, STATUS_DRAIN, job_timeout=max(3, int(settings.drain_timeout_s))
    )


def apply_status_events(batch: int = 1000) -> int:
    """Apply the status callbacks waiting in the inbox, a batch per transaction, for a third
    of this job's timeout; then hand on to a successor if any wait. A callback that cannot
    be applied is set aside with why (chatman.inbox), so it never holds up the others."""
    from chatman.errors import Invalid
    from chatman.ledger.status import record_isolated
    from chatman.messaging.twilio_events import parse_status

    settings, db, connection = _context()
    until = _budget(settings.drain_timeout_s / 3)
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    applied = 0
    while True:
        entries = inbox.read(connection, inbox.STATUS, consumer, batch, wait_ms=GATHER_MS)
        if not entries:
            # Let go of the name and clear the flag, then look once more: an event added
            # meanwhile starts a fresh drain at once, or is found by this look.
            queues.let_go(connection, STATUS_DRAIN)
            inbox.stop_kicking(connection, inbox.STATUS)
            entries = inbox.read(connection, inbox.STATUS, consumer, batch)
            if not entries:
                return applied
        parsed, refused = [], []
        for entry in entries:
            try:
                event = parse_status(entry.fields(), entry.message_id)
            except (ValueError, Invalid) as error:
                refused.append((entry, f"unreadable: {error}"))
                continue
            accepted = datetime.fromtimestamp(entry.accepted_ms / 1000, UTC)
            parsed.append((entry, replace(event, received_at=accepted)))
        for index, why in record_isolated(db.sessionmaker, [event for _, event in parsed]):
            refused.append((parsed[index][0], why))
        if refused:
            log.error("status callbacks set aside: %s", "; ".join(f"{e.id}: {why}" for e, why in refused))
            inbox.set_aside(connection, inbox.STATUS, refused)
        gone = {entry.id for entry, _ in refused}
        _evaluate_rules_later(db, connection, [e.provider_sid for entry, e in parsed if entry.id not in gone])
        inbox.ack(connection, inbox.STATUS, [entry.id for entry in entries if entry.id not in gone])
        applied += len(entries) - len(refused)
        if time.monotonic() > until:
            me = get_current_job()
            timeout = me.timeout if me is not None else settings.drain_timeout_s
            hand_on(connection, apply_status_events, STATUS_DRAIN, job_timeout=timeout)
            return applied


# A rules job's fixed cost (its queries, its commit) spread over this many messages: 1,000
# kept ~5% more of the no-rule rate than 500 did (bench/rules.py).
RULES_BATCH = 1000


def _evaluate_rules_later(db: Database, connection: Redis, sids: list[str]) -> None:
    """After a batch of statuses is applied: the messages among them that rules look at."""
    from chatman.rules.engine import messages_with_rules

    if sids:
        with db.sessionmaker() as session:
            enqueue_rules(connection, messages_with_rules(session, sids=sids))


def enqueue_rules(connection: Redis, message_ids: list[int]) -> int:
    """Evaluate the rules of these messages' campaigns, a job per RULES_BATCH messages."""
    for start in range(0, len(message_ids), RULES_BATCH):
        queues.queue(connection, queues.SYSTEM).enqueue(
            evaluate_rules, message_ids[start : start + RULES_BATCH], **queues.JOB_DEFAULTS
        )
    return len(message_ids)


def evaluate_rules(message_ids: list[int], wait_ids: list[int] = ()) -> int:
    """Fire the rules these messages now meet (once per rule and message). `wait_ids`: the
    waits the clock found run out for them, done with once this commits."""
    from chatman.rules.engine import evaluate, forget_waits

    _, db, connection = _context()
    with db.sessionmaker() as session:
        result = evaluate(session, message_ids)
        forget_waits(session, wait_ids)
        session.commit()
    enqueue_sends(connection, result.sends, result.runs)
    enqueue_webhook_deliveries(connection, result.deliveries)
    return result.fired


def enqueue_due_waits(connection: Redis, claimed: list[tuple[int, int]]) -> int:
    """Evaluate the messages whose waits ran out (claimed by the clock), a job per batch."""
    for start in range(0, len(claimed), RULES_BATCH):
        batch = claimed[start : start + RULES_BATCH]
        queues.queue(connection, queues.SYSTEM).enqueue(
            evaluate_rules,
            sorted({message_id for _, message_id in batch}),
            [wait_id for wait_id, _ in batch],
            **queues.JOB_DEFAULTS,
        )
    return len(claimed)


def apply_waiting_events() -> int:
    """Apply callbacks that arrived before their sid was recorded and raced the send."""
    from chatman.ledger.status import apply_pending_events, sids_with_pending_events

    _, db, connection = _context()
    with db.sessionmaker() as session:
        sids = sids_with_pending_events(session)
        moved = apply_pending_events(session, sids)
        session.commit()
    _evaluate_rules_later(db, connection, sids)
    return moved


# A 100 MB file imports in a few minutes; RQ stops a job that runs longer than this, and the
# clock then starts the import again.
IMPORT_TIMEOUT_S = 3600


def enqueue_import(connection: Redis, import_id: int) -> bool:
    """Enqueue a CSV import, unless its job is queued or running on a live worker."""
    return enqueue_once(
        connection,
        import_contacts,
        f"import-{import_id}",
        import_id,
        queue_name=DEFAULT,
        job_timeout=IMPORT_TIMEOUT_S,
    )


def import_contacts(import_id: int) -> str:
    """Import an uploaded CSV (contacts.imports), recording its progress as it goes."""
    from chatman.contacts.imports import run_import

    settings, db, _ = _context()
    return run_import(
        db.sessionmaker,
        import_id,
        default_region=settings.default_region,
        batch_size=settings.import_batch_size,
        max_new_attributes=settings.import_max_new_attributes,
        max_attributes=settings.max_attributes,
    )


def squash_counters() -> int:
    """Fold counter deltas into one row per counter, a run at a time, for a while."""
    from chatman.ledger import counters, series

    _, db, _ = _context()
    until = time.monotonic() + SQUASH_BUDGET_S
    folded = 0
    with db.sessionmaker() as session:
        for squash in (counters.squash, series.squash):
            while time.monotonic() < until and (rows := squash(session)):
                session.commit()
                folded += rows
            session.commit()
    return folded


def trim_events(before: str) -> int:
    """Delete applied status events received before `before`, a batch per transaction, for a
    while (the clock asks again while old ones are left)."""
    from chatman.reports.retention import BATCH, trim_events

    _, db, _ = _context()
    until = time.monotonic() + SQUASH_BUDGET_S
    deleted = 0
    with db.sessionmaker() as session:
        while time.monotonic() < until:
            n = trim_events(session, datetime.fromisoformat(before))
            session.commit()
            deleted += n
            if n < BATCH:
                break
    return deleted


def simulate_callbacks() -> int:
    """Post the simulator's due status callbacks for a few seconds, then hand on to the next
    round, due when the next callback is."""
    from chatman.messaging.simulator import post_due_callbacks

    settings, _, connection = _context()
    until = time.monotonic() + SIMULATOR_BUDGET_S
    posted, next_due = post_due_callbacks(connection, settings.webhook_auth_token)
    while next_due is not None and next_due <= time.time() and time.monotonic() < until:
        more, next_due = post_due_callbacks(connection, settings.webhook_auth_token)
        posted += more
    if next_due is not None:
        # At most a second away, so callbacks planned meanwhile by new sends are not held back.
        # RQ's scheduler works in whole seconds, truncating: rounded up, the next round never
        # runs before its callbacks are due.
        at = math.ceil(min(max(next_due, time.time()), time.time() + 1))
        hand_on(connection, simulate_callbacks, SIMULATOR, at=datetime.fromtimestamp(at, UTC))
    return posted


def expire_flows(now: str) -> int:
    """End flows whose contact stopped answering by `now` (the clock's tick time)."""
    from chatman.flows.engine import expire

    _, db, connection = _context()
    with db.sessionmaker() as session:
        queued = expire(session, datetime.fromisoformat(now))
        session.commit()
    enqueue_sends(connection, queued)
    return len(queued)


def recover_stale_sends(now: str) -> dict:
    """Settle rows whose holder died (see delivery.recover_stale_claims) as of `now` (the
    clock's tick time), and send again those that never reached the provider."""
    from chatman.campaigns.dispatch import BATCH_SIZE, SendOptions, finish_run, sent_texts
    from chatman.messaging.delivery import recover_stale_claims

    settings, db, connection = _context()
    at = datetime.fromisoformat(now)
    with db.sessionmaker() as session:
        report = recover_stale_claims(
            session,
            _provider(),
            at,
            legacy_before=at - timedelta(seconds=settings.stale_claim_s),
            describe=partial(sent_texts, options=SendOptions(links=link_options(settings))),
        )
        for run_id, ids in report.pending.items():
            # At the front: these rows have waited longest.
            batches = [
                (send_batch, (run_id, ids[i : i + BATCH_SIZE])) for i in range(0, len(ids), BATCH_SIZE)
            ]
            queues.enqueue_tracked(
                connection, run_group(run_id), batches, job_timeout=BATCH_TIMEOUT_S, at_front=True
            )
        for run_id in report.runs - set(report.pending):
            finish_run(session, run_id)  # its last rows may have been settled just now
    enqueue_sends(connection, report.conversation)
    counts = {
        "released": report.released,
        "found": report.found,
        "resent": report.resent,
        "unresolved": report.unresolved,
        "unconfirmed": report.unconfirmed,
        "abandoned": report.abandoned,
    }
    if any(counts.values()):
        log.warning("recovered stale claims: %s", counts)
    return counts


ENROLLMENTS = "enrollments"


def enqueue_advance(connection: Redis, batches: list[list[int]], now: datetime) -> int:
    """Enqueue the moving on of enrollments claimed at `now`, one job per batch."""
    queues.enqueue_tracked(
        connection,
        ENROLLMENTS,
        [(advance_enrollments, (ids, now.isoformat())) for ids in batches],
        job_timeout=BATCH_TIMEOUT_S,
    )
    return len(batches)


def advance_enrollments(enrollment_ids: list[int], now: str) -> int:
    """Move claimed drip and date enrollments on as of the clock's tick `now` (ISO), then send
    the messages their steps made."""
    from chatman.campaigns.drips import advance
    from chatman.rules.engine import messages_with_rules

    _, db, connection = _context()
    try:
        with db.sessionmaker() as session:
            moved = advance(session, enrollment_ids, datetime.fromisoformat(now))
            enqueue_rules(connection, messages_with_rules(session, ids=moved.skipped))
        enqueue_send_batches(connection, moved.to_send)
    finally:
        queues.done(connection, ENROLLMENTS)
    return sum(len(ids) for ids in moved.to_send.values())


def enqueue_send_batches(connection: Redis, to_send: dict[int, list[int]]) -> int:
    """Send these pending campaign rows (ids by run), a batch job per BATCH_SIZE rows."""
    from chatman.campaigns.dispatch import BATCH_SIZE

    for run_id, ids in to_send.items():
        batches = [(send_batch, (run_id, ids[i : i + BATCH_SIZE])) for i in range(0, len(ids), BATCH_SIZE)]
        queues.enqueue_tracked(connection, run_group(run_id), batches, job_timeout=BATCH_TIMEOUT_S)
    return sum(len(ids) for ids in to_send.values())


def enqueue_sync(connection: Redis, campaign_id: int, now: datetime | None = None) -> bool:
    name = f"sync-enrollments-{campaign_id}"
    return enqueue_once(connection, sync_enrollments, name, campaign_id, now.isoformat() if now else None)


def sync_enrollments(campaign_id: int, now: str | None = None) -> int:
    """Enroll a drip's or date campaign's new segment members; reschedule changed dates."""
    from chatman.campaigns.drips import sync_members

    _, db, _ = _context()
    with db.sessionmaker() as session:
        return sync_members(session, campaign_id, datetime.fromisoformat(now) if now else None)


# Outgoing webhooks (chatman.outgoing): first attempts in a job per WEBHOOK_BATCH deliveries,
# enqueued by whoever queued them; retries and lost jobs in one job at a time, started by the
# clock when some are due. A job makes WEBHOOK_CONCURRENCY requests at once.
WEBHOOK_BATCH = 100
WEBHOOK_CONCURRENCY = 8
WEBHOOK_BUDGET_S = 60
WEBHOOKS_DUE = "deliver-due-webhooks"


def enqueue_webhook_deliveries(connection: Redis, delivery_ids: list[int]) -> int:
    """After the commit that queued these deliveries: make their first attempts, a job per
    WEBHOOK_BATCH; returns the jobs enqueued. A job lost costs only time: the clock finds
    its deliveries due."""
    ids = list(delivery_ids)
    for start in range(0, len(ids), WEBHOOK_BATCH):
        queues.queue(connection, DEFAULT).enqueue(
            deliver_webhooks,
            ids[start : start + WEBHOOK_BATCH],
            job_timeout=BATCH_TIMEOUT_S,
            **queues.JOB_DEFAULTS,
        )
    return math.ceil(len(ids) / WEBHOOK_BATCH)


def enqueue_due_webhooks(connection: Redis, now: datetime) -> bool:
    """The job that sends the deliveries due at `now` (the clock's tick), unless one runs."""
    return enqueue_once(
        connection,
        deliver_due_webhooks,
        WEBHOOKS_DUE,
        now.isoformat(),
        queue_name=DEFAULT,
        job_timeout=3 * WEBHOOK_BUDGET_S,
    )


def _webhook_sender(settings: Settings):
    from chatman.outgoing.transport import Sender

    return Sender(settings.webhook_timeout_s, settings.webhook_allow_private, WEBHOOK_CONCURRENCY)


def _not_before(now: str | None) -> datetime:
    """The tick time a job was given, or the present when later: a job that waited in the
    queue must not record attempts, nor schedule retries, in the past. (In tests that pin the
    clock in another process, the tick time is the later one.)"""
    from chatman.timeutils import utcnow

    current = utcnow()
    return max(datetime.fromisoformat(now), current) if now else current


def deliver_webhooks(delivery_ids: list[int], now: str | None = None) -> dict:
    """One attempt at each of these deliveries that is due and not held by another worker."""
    from chatman.outgoing.sending import deliver

    settings, db, _ = _context()
    with _webhook_sender(settings) as sender, db.sessionmaker() as session:
        report = deliver(session, sender, delivery_ids, _not_before(now))
    return dict(report)


def deliver_due_webhooks(now: str) -> dict:
    """Attempt the deliveries due at the tick `now`, for a third of this job's timeout; then
    hand on to a successor if more are due."""
    from chatman.outgoing.sending import deliver_due

    settings, db, connection = _context()
    with _webhook_sender(settings) as sender, db.sessionmaker() as session:
        report, more = deliver_due(session, sender, _not_before(now), until=_budget(WEBHOOK_BUDGET_S))
    if more:
        hand_on(
            connection,
            deliver_due_webhooks,
            WEBHOOKS_DUE,
            _not_before(now).isoformat(),
            queue_name=DEFAULT,
            job_timeout=3 * WEBHOOK_BUDGET_S,
        )
    return dict(report)
