"""The clock door: wakes up every few seconds, asks the domain what is due, enqueues it.

Schedules live in the database, so a clock that restarts loses nothing; the heartbeat it
leaves in Redis lets /healthz say whether a clock is running.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from datetime import datetime

from redis import Redis

from chatman.timeutils import utcnow

HEARTBEAT_KEY = "chatman:clock:last_tick"
log = logging.getLogger(__name__)

# Each task takes the tick time and returns how much work it enqueued. Later features
# (scheduled launches, recurring occurrences, drip steps, stale claims) register here.
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
