"""The clock door: wakes up every few seconds, asks the domain what is due, enqueues it.

Schedules live in the database, so a clock that restarts loses nothing; the heartbeat it
leaves in Redis lets /healthz say whether a clock is running.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from redis import Redis

from chatman.campaigns import lifecycle
from chatman.db import Database
from chatman.errors import Conflict
from chatman.jobs import enqueue_dispatch
from chatman.timeutils import utcnow

HEARTBEAT_KEY = "chatman:clock:last_tick"
# A run still freezing this long after it started lost its dispatch job.
STALE_FREEZE = timedelta(minutes=2)
log = logging.getLogger(__name__)

# Each task takes the tick time and returns how much work it enqueued. Later features
# (recurring occurrences, drip steps, stale claims) register here too.
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
    """Tick task: launch scheduled campaigns whose time has come, and re-dispatch runs
    whose freeze was interrupted (dispatch is safe to repeat)."""

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
                enqueue_dispatch(connection, run.id)
                launched += 1
            for run_id in lifecycle.unfrozen_runs(session, now - STALE_FREEZE):
                enqueue_dispatch(connection, run_id)  # no-op while its dispatch is still queued
        return launched

    task.__name__ = "launch_due_campaigns"
    return task
