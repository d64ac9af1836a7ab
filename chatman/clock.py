"""The clock door: wakes up every few seconds, asks the domain what is due, enqueues it.

Schedules live in the database, so a clock that restarts loses nothing; the heartbeat it
leaves in Redis lets /healthz say whether a clock is running.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from redis import Redis

from chatman import inbox, jobs, queues
from chatman.campaigns import dispatch, drips, lifecycle, variants
from chatman.config import Settings
from chatman.contacts import imports
from chatman.db import Database
from chatman.errors import Conflict, Invalid
from chatman.flows import engine as flows
from chatman.jobs import enqueue_dispatch
from chatman.ledger import counters, sending, series
from chatman.ledger.status import sids_with_pending_events
from chatman.messaging import outbox, simulator
from chatman.queues import enqueue_once
from chatman.reports import retention
from chatman.timeutils import utcnow

HEARTBEAT_KEY = "chatman:clock:last_tick"
# A run whose rows have not moved for this long is asked whether it still has a live job.
QUIET_RUN = timedelta(seconds=30)
LOST_MESSAGE = timedelta(minutes=5)
# The chain of simulator rounds runs at most a second or two behind the callbacks it posts.
SIMULATOR_OVERDUE = timedelta(seconds=10)
log = logging.getLogger(__name__)

# Each task takes the tick time and returns how much work it enqueued.
TickTask = Callable[[datetime], int]


def tick(connection: Redis, tasks: list[TickTask], now: datetime | None = None) -> int:
    now = now or utcnow()
    done = 0
    for task in tasks:
        try:
            done += task(now)
        except Exception:  # one failing task must not stop the others or the clock
            log.exception("clock task %s failed", getattr(task, "__name__", task))
    connection.set(HEARTBEAT_KEY, now.isoformat())
    return done


def last_tick(connection: Redis) -> datetime | None:
    raw = connection.get(HEARTBEAT_KEY)
    return datetime.fromisoformat(raw.decode()) if raw else None


def run(connection: Redis, tasks: list[TickTask], interval_s: float, ticks: int | None = None) -> None:
    """Tick every `interval_s` until SIGTERM/SIGINT (or `ticks` ticks, for tests)."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    count = 0
    while not stop.is_set():
        tick(connection, tasks)
        count += 1
        if ticks is not None and count >= ticks:
            break
        stop.wait(interval_s)


def launch_due_campaigns(db: Database, connection: Redis) -> TickTask:
    """Tick task: launch scheduled campaigns whose time has come."""

    def task(now: datetime) -> int:
        launched = 0
        with db.sessionmaker() as session:
            for campaign_id in lifecycle.due_campaigns(session, now):
                try:
                    run = lifecycle.launch(session, campaign_id, now)
                    session.commit()
                except Conflict:  # another clock or a marketer got there first
                    session.rollback()
                    continue
                except Invalid as error:  # e.g. its template is no longer approved
                    session.rollback()
                    lifecycle.unschedule(session, campaign_id, error.message)
                    session.commit()
                    log.error("campaign %s was due but cannot launch: %s", campaign_id, error.message)
                    continue
                enqueue_dispatch(connection, run.id)
                launched += 1
        return launched

    task.__name__ = "launch_due_campaigns"
    return task


def recover_stale_sends(db: Database, connection: Redis, stale_after_s: float) -> TickTask:
    """Tick task: settle claims whose holder died (its lease ran out; a claim without a lease,
    made by an older version, after `stale_after_s`); re-dispatch runs whose jobs are really gone
    (a run that waits behind other work still has its jobs queued, and is left alone); send
    conversation messages whose job was lost."""
    legacy = timedelta(seconds=stale_after_s)

    def task(now: datetime) -> int:
        enqueued = 0
        with db.sessionmaker() as session:
            if sending.stale_claims(session, now, now - legacy, limit=1):
                enqueued += enqueue_once(
                    connection,
                    jobs.recover_stale_sends,
                    "recover-stale-sends",
                    now.isoformat(),
                    job_timeout=180,
                )
            for run_id in dispatch.quiet_runs(session, now - QUIET_RUN):
                if not queues.has_live_job(connection, jobs.run_group(run_id)):
                    enqueued += enqueue_dispatch(connection, run_id)
            # A conversation message is sent within seconds; one still waiting may have lost
            # its job (one job per message: a message whose job waits in line is left alone).
            lost = outbox.stale_pending(session, now - LOST_MESSAGE)
        jobs.enqueue_sends(connection, lost)
        return enqueued + len(lost)

    task.__name__ = "recover_stale_sends"
    return task


def drain_inboxes(db: Database, connection: Redis, settings: Settings) -> TickTask:
    """Tick task: make sure callbacks waiting in the inbox, or waiting for their sid, get applied
    (a webhook starts a drain itself; this catches the one that raced the end of a drain, and
    starts a new one when a drain died)."""

    def task(now: datetime) -> int:
        enqueued = 0
        if inbox.backlog(connection, inbox.STATUS):
            enqueued += jobs.enqueue_status_drain(connection, settings)
        with db.sessionmaker() as session:
            if sids_with_pending_events(session, limit=1):
                enqueued += enqueue_once(connection, jobs.apply_waiting_events, "apply-waiting-events")
        return enqueued

    task.__name__ = "drain_inboxes"
    return task


def expire_flows(db: Database, connection: Redis) -> TickTask:
    """Tick task: end the flows whose contact stopped answering."""

    def task(now: datetime) -> int:
        with db.sessionmaker() as session:
            overdue = flows.any_overdue(session, now)
        return enqueue_once(connection, jobs.expire_flows, "expire-flows", now.isoformat()) if overdue else 0

    task.__name__ = "expire_flows"
    return task


def squash_counters(db: Database, connection: Redis) -> TickTask:
    """Tick task: fold the counters' delta rows, so that reading a counter stays a short sum."""

    def task(now: datetime) -> int:
        with db.sessionmaker() as session:
            pending = counters.unsquashed(session) or series.unsquashed(session)
        return enqueue_once(connection, jobs.squash_counters, "squash-counters") if pending else 0

    task.__name__ = "squash_counters"
    return task


def launch_due_occurrences(db: Database, connection: Redis, catch_up_s: float) -> TickTask:
    """Tick task: start the runs of recurring campaigns whose next occurrence has come."""

    def task(now: datetime) -> int:
        with db.sessionmaker() as session:
            started = lifecycle.launch_occurrences(session, now, timedelta(seconds=catch_up_s))
        for run_id in started:
            enqueue_dispatch(connection, run_id)
        return len(started)

    task.__name__ = "launch_due_occurrences"
    return task


def advance_enrollments(db: Database, connection: Redis, budget_s: float = 20.0) -> TickTask:
    """Tick task: claim the drip steps and date fires that are due, a batch at a time, and
    enqueue one job per batch to move them on (never one job per contact)."""

    def task(now: datetime) -> int:
        until = time.monotonic() + budget_s
        enqueued = 0
        with db.sessionmaker() as session:
            while ids := drips.claim_due(session, now):
                enqueued += jobs.enqueue_advance(connection, [ids], now)
                if time.monotonic() > until:  # the next tick goes on; other tasks get their turn
                    break
        return enqueued

    task.__name__ = "advance_enrollments"
    return task


def release_held_messages(db: Database, connection: Redis, budget_s: float = 20.0) -> TickTask:
    """Tick task: send the held messages whose send window has opened, a batch job per
    BATCH_SIZE rows. (A clock killed between the release and the enqueue leaves pending rows,
    which the quiet-run watchdog hands to a job.)"""

    def task(now: datetime) -> int:
        until = time.monotonic() + budget_s
        released = 0
        with db.sessionmaker() as session:
            while to_send := dispatch.release_held(session, now):
                released += jobs.enqueue_send_batches(connection, to_send)
                if time.monotonic() > until:
                    break
        return released

    task.__name__ = "release_held_messages"
    return task


def sync_enrollments(db: Database, connection: Redis, every_s: float) -> TickTask:
    """Tick task: every `every_s`, enroll new members of drip and date campaigns' segments."""

    def task(now: datetime) -> int:
        with db.sessionmaker() as session:
            due = drips.campaigns_to_sync(session, now, timedelta(seconds=every_s))
        return sum(jobs.enqueue_sync(connection, campaign_id, now) for campaign_id in due)

    task.__name__ = "sync_enrollments"
    return task


def resume_imports(db: Database, connection: Redis) -> TickTask:
    """Tick task: every CSV import not finished has a job; one whose worker died starts again."""

    def task(now: datetime) -> int:
        with db.sessionmaker() as session:
            waiting = imports.unfinished(session)
        return sum(jobs.enqueue_import(connection, import_id) for import_id in waiting)

    task.__name__ = "resume_imports"
    return task


def simulated_network(connection: Redis) -> TickTask:
    """Tick task: post the simulator's overdue callbacks. Each round of posting schedules the
    next; a worker killed mid-round ends that chain, and statuses would wait for the next send."""

    def task(now: datetime) -> int:
        due = simulator.next_due(connection)
        if due is None or due > (now - SIMULATOR_OVERDUE).timestamp():
            return 0
        return enqueue_once(connection, jobs.simulate_callbacks, jobs.SIMULATOR)

    task.__name__ = "simulated_network"
    return task


def evaluate_due_waits(db: Database, connection: Redis, most: int = 20 * jobs.RULES_BATCH) -> TickTask:
    """Tick task: rules' waiting conditions whose time ran out ("no reply within 24 h"), found
    by their due-time index, evaluated by workers; at most `most` a tick, the rest next tick."""
    from chatman.rules.engine import claim_due_waits

    def task(now: datetime) -> int:
        with db.sessionmaker() as session:
            claimed = claim_due_waits(session, now, most)
            session.commit()
        return jobs.enqueue_due_waits(connection, claimed)

    task.__name__ = "evaluate_due_waits"
    return task


def deliver_due_webhooks(db: Database, connection: Redis) -> TickTask:
    """Tick task: when outgoing webhook deliveries are due (a retry's time has come, or a first
    attempt's job was lost), found by the index of pending ones, one job sends them."""
    from chatman.outgoing.deliveries import any_due

    def task(now: datetime) -> int:
        with db.sessionmaker() as session:
            due = any_due(session, now)
        return jobs.enqueue_due_webhooks(connection, now) if due else 0

    task.__name__ = "deliver_due_webhooks"
    return task


def decide_ab_tests(db: Database, connection: Redis) -> TickTask:
    """Tick task: pick the winner of each A/B test whose hours are up, and send it to the rest
    of the audience (once: the pick takes the run's row lock and finds it testing)."""

    def task(now: datetime) -> int:
        picked = []
        with db.sessionmaker() as session:
            for run_id in variants.due_tests(session, now):
                if variants.pick_winner(session, run_id, now):
                    picked.append(run_id)
                session.commit()
        for run_id in picked:
            enqueue_dispatch(connection, run_id)
        return len(picked)

    task.__name__ = "decide_ab_tests"
    return task


def trim_old_events(db: Database, connection: Redis, retention_days: int) -> TickTask:
    """Tick task: delete applied status events older than the retention (reports do not read
    them), when the oldest one is old enough."""

    def task(now: datetime) -> int:
        if not retention_days:
            return 0
        before = now - timedelta(days=retention_days)
        with db.sessionmaker() as session:
            oldest = retention.oldest_applied(session)
        if oldest is None or oldest >= before:
            return 0
        return enqueue_once(connection, jobs.trim_events, "trim-events", before.isoformat())

    task.__name__ = "trim_old_events"
    return task


def default_tasks(db: Database, connection: Redis, settings: Settings) -> list[TickTask]:
    return [
        launch_due_campaigns(db, connection),
        launch_due_occurrences(db, connection, settings.recurring_catch_up_s),
        sync_enrollments(db, connection, settings.enroll_sync_s),
        advance_enrollments(db, connection),
        release_held_messages(db, connection),
        recover_stale_sends(db, connection, settings.stale_claim_s),
        drain_inboxes(db, connection, settings),
        expire_flows(db, connection),
        squash_counters(db, connection),
        decide_ab_tests(db, connection),
        trim_old_events(db, connection, settings.event_retention_days),
        simulated_network(connection),
        resume_imports(db, connection),
        evaluate_due_waits(db, connection),
        deliver_due_webhooks(db, connection),
    ]
