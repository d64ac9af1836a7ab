"""A clock process that ticks through simulated time as fast as the jobs it enqueues allow:

    python -m tests.simulated_clock START_ISO HOURS STEP_MINUTES [PEERS]

Every tick runs the real clock's tasks (`clock.default_tasks`) at the next simulated instant,
the wall clock read as that instant in this process, then waits until the workers have no
job queued or running, so a simulated day passes in a minute or two with every step's work
done in its turn. With PEERS, that many such clocks start each tick together (a barrier in
Redis), so their tasks race for the same due work: tests run two to see that two clocks never
double anything.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta

from redis import Redis
from rq.registry import StartedJobRegistry

from chatman import clock, queues
from chatman.config import load_settings
from chatman.db import Database
from chatman.timeutils import pinned

IDLE_TIMEOUT_S = 60
# The workers' claim leases run on the real clock, which a simulated one is months ahead of:
# to it every lease would look dead.
REAL_TIME_TASKS = {"recover_stale_sends"}


def idle(redis: Redis) -> bool:
    for name in queues.QUEUES:
        queue = queues.queue(redis, name)
        if queue.count or StartedJobRegistry(queue=queue).count:
            return False
    return True


def wait_idle(redis: Redis) -> None:
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    calm = 0
    while calm < 2 and time.monotonic() < deadline:  # twice in a row: a job between queue and registry
        calm = calm + 1 if idle(redis) else 0
        time.sleep(0.02)


def barrier(redis: Redis, name: str, peers: int) -> None:
    """Wait until `peers` clocks have reached `name` (or a minute has passed)."""
    key = f"chatman:test:barrier:{name}"
    redis.incr(key)
    redis.expire(key, 3600)
    deadline = time.monotonic() + 60
    while int(redis.get(key) or 0) < peers and time.monotonic() < deadline:
        time.sleep(0.001)


def main(start: str, hours: str, step_minutes: str, peers: str = "1") -> None:
    settings = load_settings()
    db = Database(settings.database_url)
    redis = Redis.from_url(settings.redis_url)
    tasks = [t for t in clock.default_tasks(db, redis, settings) if t.__name__ not in REAL_TIME_TASKS]
    now, end = datetime.fromisoformat(start), datetime.fromisoformat(start) + timedelta(hours=float(hours))
    while now <= end:
        barrier(redis, now.isoformat(), int(peers))
        with pinned(now):
            clock.tick(redis, tasks, now)
        wait_idle(redis)
        now += timedelta(minutes=float(step_minutes))


if __name__ == "__main__":
    main(*sys.argv[1:])
