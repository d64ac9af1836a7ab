"""RQ queues, job entry points and the worker. Jobs stay thin: they call domain functions.

A job runs in a worker process without Flask, so it builds its database and Redis handles
from the settings once per process. Every job is safe to run twice: the database decides
what is done (claims, unique keys), never the queue.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from datetime import UTC, datetime, timedelta
from functools import cache

from redis import Redis
from rq import Queue, SimpleWorker, Worker
from rq.exceptions import DuplicateJobError

from chatman import inbox
from chatman.config import Settings, load_settings
from chatman.db import Database

# Workers take jobs from the first queue that has one: a customer waiting for an answer comes
# before the next batch of a broadcast.
QUEUES = ("replies", "default")
# Longer than any batch takes, shorter than STALE_CLAIM_S: a batch that overruns is killed
# before the clock treats its rows as abandoned.
BATCH_TIMEOUT_S = 600
RETRY_DELAY = timedelta(seconds=5)
# How long the status drain waits to gather a trickle of callbacks into one transaction:
# the ledger lags by this much, and a callback costs a third of the CPU.
GATHER_MS = 150
# A send that got no answer is looked up at the provider this much later, once it is settled there.
SETTLE_DELAY = timedelta(seconds=60)
log = logging.getLogger(__name__)


def queue(connection: Redis, name: str = "default") -> Queue:
    return Queue(name, connection=connection)


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
    SimpleWorker([queue(connection, name) for name in QUEUES], connection=connection).work(
        with_scheduler=True, burst=burst
    )


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


def enqueue_once(connection: Redis, func, job_id: str, *args, at: datetime | None = None, **options) -> bool:
    """Enqueue unless a job with this id is queued, scheduled or running; True if enqueued.

    The job's record is dropped as soon as it finishes (result_ttl=0), so the id is free again
    for the next round of work.
    """
    q = queue(connection)
    options = {"job_id": job_id, "unique": True, "result_ttl": 0, "failure_ttl": 300, **options}
    try:
        if at is None:
            q.enqueue(func, *args, **options)
        else:
            q.enqueue_at(at, func, *args, **options)
    except DuplicateJobError:
        return False
    return True


def enqueue_dispatch(connection: Redis, run_id: int, again: bool = False) -> bool:
    """Enqueue a run's dispatch (freeze, then batches). `again`: the run stalled, and its
    first dispatch job may be stuck in a dead worker's registry, so do not wait for it."""
    if again:
        queue(connection).enqueue(dispatch_run, run_id, result_ttl=0, failure_ttl=300)
        return True
    return enqueue_once(connection, dispatch_run, f"dispatch-run-{run_id}", run_id)


def dispatch_run(run_id: int) -> int:
    """Freeze a run's audience and enqueue its send batches; safe to run again."""
    from chatman.campaigns.dispatch import finish_run, freeze_run, pending_batches

    _, db, connection = _context()
    with db.sessionmaker() as session:
        freeze_run(session, run_id)
        jobs = [
            Queue.prepare_data(send_batch, args=(run_id, ids), result_ttl=0, timeout=BATCH_TIMEOUT_S)
            for ids in pending_batches(session, run_id)
        ]
        if not jobs:
            finish_run(session, run_id)
    q = queue(connection)
    for start in range(0, len(jobs), 500):
        q.enqueue_many(jobs[start : start + 500])
    return len(jobs)


def enqueue_sends(connection: Redis, message_ids: list[int], runs: list[tuple[int, int]] = ()) -> None:
    """Send conversation messages and single-contact campaign starts, ahead of broadcasts."""
    jobs = [Queue.prepare_data(send_message, args=(m,), result_ttl=0, timeout=60) for m in message_ids]
    jobs += [Queue.prepare_data(send_batch, args=(run, [m]), result_ttl=0, timeout=60) for run, m in runs]
    if jobs:
        queue(connection, "replies").enqueue_many(jobs)


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
        queue(connection, "replies").enqueue_in(delay, send_message, message_id, result_ttl=0)
    if outcome.ambiguous:
        queue(connection).enqueue_in(SETTLE_DELAY, settle_rows, outcome.ambiguous, result_ttl=0)
    if outcome.submitted and provider.name == "simulator":
        enqueue_once(connection, simulate_callbacks, "simulator-callbacks")
    return "submitted" if outcome.submitted else "failed" if outcome.failed else "pending"


def send_batch(run_id: int, message_ids: list[int]) -> dict:
    from chatman.campaigns.dispatch import SendOptions, finish_run
    from chatman.campaigns.dispatch import send_batch as send
    from chatman.messaging.ratelimit import RateLimiter

    settings, db, connection = _context()
    provider = _provider()
    limiter = RateLimiter(connection, provider.sender, settings.sender_rate_per_s)
    options = SendOptions(
        status_callback=status_callback(settings),
        concurrency=settings.send_concurrency,
        skip_us_marketing=settings.skip_us_marketing,
    )
    with db.sessionmaker() as session:
        result = send(session, message_ids, provider, limiter, options)
        if result.retry:
            # Backing off: 5 s after a first failed try, then 10, 20, 40 s.
            delay = RETRY_DELAY * 2 ** max(0, result.retry_attempts - 1)
            queue(connection).enqueue_in(
                delay, send_batch, run_id, result.retry, result_ttl=0, job_timeout=BATCH_TIMEOUT_S
            )
        if result.ambiguous:
            queue(connection).enqueue_in(SETTLE_DELAY, settle_rows, result.ambiguous, result_ttl=0)
        if not (result.retry or result.ambiguous):
            for run in result.runs:
                finish_run(session, run)
    if result.submitted and provider.name == "simulator":
        enqueue_once(connection, simulate_callbacks, "simulator-callbacks")
    return {
        "submitted": result.submitted,
        "skipped": result.skipped,
        "failed": result.failed,
        "released": result.released,
        "retry": len(result.retry),
    }


def enqueue_status_drain(connection: Redis) -> bool:
    return enqueue_once(connection, apply_status_events, "apply-status-events")


def apply_status_events(batch: int = 1000) -> int:
    """Apply the status callbacks waiting in the inbox, a batch per transaction."""
    from chatman.ledger.status import record_many
    from chatman.messaging.twilio_events import parse_status

    _, db, connection = _context()
    consumer = f"{socket.gethostname()}-{os.getpid()}"
    applied = 0
    while True:
        entries = inbox.read(connection, inbox.STATUS, consumer, batch, wait_ms=GATHER_MS)
        if not entries:
            # Clear the flag, then look once more: an event added in between is not stranded.
            inbox.stop_kicking(connection, inbox.STATUS)
            entries = inbox.read(connection, inbox.STATUS, consumer, batch)
            if not entries:
                return applied
        events = [e for e in (parse_status(fields) for _, fields in entries) if e is not None]
        with db.sessionmaker() as session:
            record_many(session, events)
            session.commit()
        inbox.ack(connection, inbox.STATUS, [entry_id for entry_id, _ in entries])
        applied += len(entries)


def apply_waiting_events() -> int:
    """Apply callbacks that arrived before their sid was recorded and raced the send."""
    from chatman.ledger.status import apply_pending_events, sids_with_pending_events

    _, db, _ = _context()
    with db.sessionmaker() as session:
        moved = apply_pending_events(session, sids_with_pending_events(session))
        session.commit()
    return moved


def simulate_callbacks() -> int:
    """Post the simulator's due status callbacks, then come back when the next is due."""
    import time

    from chatman.messaging.simulator import post_due_callbacks

    settings, _, connection = _context()
    posted, next_due = post_due_callbacks(connection, settings.webhook_auth_token)
    if next_due is not None:
        # At most two seconds away, so callbacks planned meanwhile by new sends are not held back.
        # RQ schedules in whole seconds, truncating: rounded up, the continuation never runs
        # before its callbacks are due, and its id (one per second) differs from this job's,
        # which is not free until this job ends.
        at = math.ceil(min(max(next_due, time.time() + 0.2), time.time() + 1))
        enqueue_once(
            connection,
            simulate_callbacks,
            f"simulator-callbacks-{at}",
            at=datetime.fromtimestamp(at, UTC),
        )
    return posted


def settle_rows(message_ids: list[int]) -> dict:
    """Ask the provider about rows whose send got no answer, then send those it lacks."""
    return _recover(datetime.now(UTC), message_ids)


def expire_flows(now: str) -> int:
    """End flows whose contact stopped answering by `now` (the clock's tick time)."""
    from chatman.flows.engine import expire

    _, db, connection = _context()
    with db.sessionmaker() as session:
        queued = expire(session, datetime.fromisoformat(now))
        session.commit()
    enqueue_sends(connection, queued)
    return len(queued)


def recover_stale_sends(claimed_before: str) -> dict:
    """Settle rows whose sender died (see delivery.recover_stale_claims) and send the rest."""
    return _recover(datetime.fromisoformat(claimed_before), None)


def _recover(claimed_before: datetime, message_ids: list[int] | None) -> dict:
    from chatman.messaging.delivery import recover_stale_claims

    settings, db, connection = _context()
    provider = _provider()
    with db.sessionmaker() as session:
        report = recover_stale_claims(session, provider, claimed_before, ids=message_ids)
    for run_id in report.runs:
        enqueue_dispatch(connection, run_id, again=True)
    enqueue_sends(connection, report.conversation)
    if report.found or report.resent or report.released or report.abandoned:
        log.warning("recovered stale claims: %s", report)
    return {
        "released": report.released,
        "found": report.found,
        "resent": report.resent,
        "abandoned": report.abandoned,
        "unresolved": report.unresolved,
    }
