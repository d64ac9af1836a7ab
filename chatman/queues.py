"""RQ queues, and the few rules Chatman keeps on top of them.

- **One job per name** (`enqueue_once`): the status drain, a run's dispatch, one conversation
  message. A name points at its holder, the job now queued or running; a new one is enqueued
  only when the holder is gone: finished, failed, stopped, or started by a worker that no
  longer lives. So no dead or failed job ever locks a name out.
- **Handing on** (`hand_on`): a long job works for a bounded time, then makes its successor
  the holder and ends, rather than running into its timeout.
- **Jobs of a piece of work** (`track`, `has_live_job`): the jobs of a campaign run, so the
  clock can tell a run that waits behind other work from one whose jobs were lost.
- **Liveness** (`keep_alive`): each worker says it lives every couple of seconds; a worker
  that stopped saying so is dead, and the jobs it had started are gone.

Redis carries only this bookkeeping of work in flight: the database decides what is done, and
every job is safe to run twice, so a duplicate after a race costs time, never a double send.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, get_current_job
from rq.registry import ScheduledJobRegistry

# Workers take jobs from the first queue that has one: a customer waiting for an answer, then
# the short jobs that keep the system moving (status drains, recovery, dispatch), then sends.
REPLIES, SYSTEM, DEFAULT = "replies", "system", "default"
QUEUES = (REPLIES, SYSTEM, DEFAULT)
HOLDER = "chatman:once:"
HOLDER_TTL_S = 86_400
ALIVE = "chatman:worker-alive:"
HEARTBEAT_S = 2.0
# Three missed heartbeats and the worker is taken for dead.
ALIVE_TTL_S = 6
TRACK = "chatman:jobs:"
TRACK_TTL_S = 7 * 86_400
# A job is tracked just before it is enqueued: one missing this soon after is on its way.
ENQUEUING_S = 10
JOB_DEFAULTS = {"result_ttl": 0, "failure_ttl": 3600}
# A scheduled job this far past its time is not coming: the only scheduler that could move
# it died with its worker, and RQ lets another take over only minutes later.
SCHEDULER_SLACK_S = 30
log = logging.getLogger(__name__)

# KEYS[1] holder key; ARGV expected holder ('' for none), new holder, ttl. 1 when swapped.
_SWAP = """
local current = redis.call('GET', KEYS[1])
if (current or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""


def queue(connection: Redis, name: str = DEFAULT) -> Queue:
    return Queue(name, connection=connection)


def enqueue_once(
    connection: Redis,
    func: Callable,
    name: str,
    *args: Any,
    at: datetime | None = None,
    queue_name: str = SYSTEM,
    group: str | None = None,
    **options: Any,
) -> bool:
    """Enqueue `func(*args)` as the job called `name` unless its holder is still queued,
    scheduled or running on a live worker; True when enqueued. `group`: track it there too."""
    current = _holder(connection, name)
    if current and job_alive(connection, current):
        return False
    return _become_holder(
        connection, name, current, func, args, at=at, queue_name=queue_name, group=group, **options
    )


def hand_on(connection: Redis, func: Callable, name: str, *args: Any, **keywords: Any) -> bool:
    """From the job holding `name`: enqueue its successor (keywords as for enqueue_once) and
    make it the holder. False when another job has taken the name meanwhile (it took this one
    for dead): that one goes on. Outside a job (a test, a command), the same as enqueue_once."""
    me = get_current_job()
    if me is None:
        return enqueue_once(connection, func, name, *args, **keywords)
    current = _holder(connection, name)
    if current not in (me.id, None):
        return False
    return _become_holder(connection, name, current, func, args, **keywords)


def let_go(connection: Redis, name: str) -> None:
    """From the job holding `name`: stop holding it (a job that ends may still look for more
    work afterwards), so that whoever has work for it now enqueues a fresh one at once."""
    me = get_current_job()
    if me is not None:
        connection.register_script(_SWAP)(keys=[HOLDER + name], args=[me.id, "", 1])


def job_alive(connection: Redis, job_id: str) -> bool:
    """Is this job waiting to run, or running on a worker that lives?"""
    try:
        job = Job.fetch(job_id, connection=connection)
        status = job.get_status(refresh=False)
    except NoSuchJobError:  # finished (nothing kept), or lost with Redis
        return False
    if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.CREATED):
        return True
    if status == JobStatus.SCHEDULED:
        due = connection.zscore(ScheduledJobRegistry(job.origin, connection=connection).key, job_id)
        return due is None or due > time.time() - SCHEDULER_SLACK_S
    return status == JobStatus.STARTED and worker_alive(connection, job.worker_name)


def enqueue_tracked(
    connection: Redis,
    group: str,
    calls: Sequence[tuple[Callable, tuple]],
    queue_name: str = DEFAULT,
    **options: Any,
) -> list[str]:
    """Enqueue many jobs of one piece of work (`group`), tracked there before they are
    queued, so the work never looks jobless in between. Returns their ids."""
    q = queue(connection, queue_name)
    options = JOB_DEFAULTS | options
    options["timeout"] = options.pop("job_timeout", None)  # prepare_data's name for it
    prepared = [Queue.prepare_data(func, args=args, job_id=_job_id(group), **options) for func, args in calls]
    ids = [p.job_id for p in prepared]
    track(connection, group, ids)
    for start in range(0, len(prepared), 500):
        q.enqueue_many(prepared[start : start + 500])
    return ids


def enqueue_tracked_in(
    connection: Redis,
    group: str,
    delay: timedelta,
    func: Callable,
    *args: Any,
    queue_name: str = DEFAULT,
    **options: Any,
) -> str:
    """One job of `group`, to run after `delay` (a retry backing off)."""
    job_id = _job_id(group)
    track(connection, group, [job_id])
    queue(connection, queue_name).enqueue_in(
        delay, func, *args, **(JOB_DEFAULTS | options | {"job_id": job_id})
    )
    return job_id


def track(connection: Redis, group: str, job_ids: Iterable[str]) -> None:
    """Count these jobs as `group`'s from now (tracked with the time, for `has_live_job`)."""
    job_ids = list(job_ids)
    if job_ids:
        pipe = connection.pipeline(transaction=False)
        pipe.zadd(TRACK + group, dict.fromkeys(job_ids, time.time()))
        pipe.expire(TRACK + group, TRACK_TTL_S)
        pipe.execute()


def done(connection: Redis, group: str) -> None:
    """The current job of `group` is over: it no longer counts as the group's live job."""
    me = get_current_job()
    if me is not None:
        connection.zrem(TRACK + group, me.id)


def has_live_job(connection: Redis, group: str) -> bool:
    """Does any job of `group` wait or run? Jobs found gone are forgotten on the way. A job
    tracked moments ago but not there yet is being enqueued: it counts."""
    key = TRACK + group
    me = get_current_job()
    gone = []
    found = False
    for raw, tracked_at in connection.zscan_iter(key, count=200):
        job_id = raw.decode()
        if me is not None and job_id == me.id:
            continue
        if job_alive(connection, job_id) or tracked_at > time.time() - ENQUEUING_S:
            found = True
            break
        gone.append(job_id)
    if gone:
        connection.zrem(key, *gone)
    return found


def keep_alive(connection: Redis, worker_name: str) -> threading.Event:
    """Say every HEARTBEAT_S that this worker lives, from a thread, until the returned event is
    set. RQ's own heartbeat cannot tell: a worker running its jobs in-process renews it only
    between jobs, with a TTL as long as the job's timeout."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.is_set():
            try:
                connection.set(ALIVE + worker_name, 1, ex=ALIVE_TTL_S)
            except RedisError as exc:  # Redis away: nothing to tell it; try again shortly
                log.warning("worker heartbeat failed: %s", exc)
            stop.wait(HEARTBEAT_S)

    threading.Thread(target=beat, name="chatman-heartbeat", daemon=True).start()
    return stop


def worker_alive(connection: Redis, worker_name: str | None) -> bool:
    return bool(worker_name) and bool(connection.exists(ALIVE + worker_name))


def _holder(connection: Redis, name: str) -> str | None:
    raw = connection.get(HOLDER + name)
    return raw.decode() if raw else None


def _become_holder(
    connection: Redis,
    name: str,
    current: str | None,
    func: Callable,
    args: tuple,
    at: datetime | None = None,
    queue_name: str = SYSTEM,
    group: str | None = None,
    **options: Any,
) -> bool:
    job_id = _job_id(name)
    swapped = connection.register_script(_SWAP)(
        keys=[HOLDER + name], args=[current or "", job_id, HOLDER_TTL_S]
    )
    if not swapped:  # another enqueuer got there first
        return False
    if group:
        track(connection, group, [job_id])
    q = queue(connection, queue_name)
    options = JOB_DEFAULTS | options | {"job_id": job_id}
    if at is None:
        q.enqueue(func, *args, **options)
    else:
        q.enqueue_at(at, func, *args, **options)
    return True


def _job_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:16]}"
