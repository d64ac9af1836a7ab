"""RQ queues, job entry points and the worker. Jobs stay thin: they call domain functions.

A job runs in a worker process without Flask, so it builds its database and Redis handles
from the settings once per process.
"""

from __future__ import annotations

from functools import cache

from redis import Redis
from rq import Queue, Worker
from rq.exceptions import DuplicateJobError

from chatman.config import Settings, load_settings
from chatman.db import Database

QUEUES = ("default",)


def queue(connection: Redis, name: str = "default") -> Queue:
    return Queue(name, connection=connection)


def run_worker(connection: Redis, burst: bool = False) -> None:
    """Work the queues, with RQ's scheduler so delayed and retried jobs run."""
    Worker([queue(connection, name) for name in QUEUES], connection=connection).work(
        with_scheduler=True, burst=burst
    )


def worker_count(connection: Redis) -> int:
    return len(Worker.all(connection=connection))


def make_provider(settings: Settings, connection: Redis):
    """Twilio when its credentials are set, else the simulator."""
    from chatman.messaging.providers import SimulatorProvider, TwilioProvider

    if settings.twilio_account_sid and settings.twilio_auth_token:
        return TwilioProvider(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            from_=settings.twilio_whatsapp_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            base_url=settings.twilio_api_base_url,
        )
    return SimulatorProvider(connection)


@cache
def _context() -> tuple[Settings, Database, Redis]:
    settings = load_settings()
    return settings, Database(settings.database_url), Redis.from_url(settings.redis_url)


def enqueue_dispatch(connection: Redis, run_id: int) -> bool:
    """Enqueue a run's dispatch unless one is already queued or running; True if enqueued.

    A finished or failed dispatch expires within minutes, so the clock can retry a run
    whose freeze was interrupted.
    """
    try:
        queue(connection).enqueue(
            dispatch_run,
            run_id,
            job_id=f"dispatch-run-{run_id}",
            unique=True,
            result_ttl=60,
            failure_ttl=120,
        )
    except DuplicateJobError:
        return False
    return True


def dispatch_run(run_id: int) -> int:
    """Freeze a run's audience and enqueue its send batches; safe to run again."""
    from chatman.campaigns.dispatch import freeze_run, pending_batches

    _, db, connection = _context()
    with db.sessionmaker() as session:
        freeze_run(session, run_id)
        jobs = [
            Queue.prepare_data(send_batch, args=(run_id, ids), result_ttl=60)
            for ids in pending_batches(session, run_id)
        ]
    q = queue(connection)
    for start in range(0, len(jobs), 500):
        q.enqueue_many(jobs[start : start + 500])
    return len(jobs)


def send_batch(run_id: int, message_ids: list[int]) -> dict:
    from chatman.campaigns.dispatch import send_batch as send
    from chatman.messaging.ratelimit import RateLimiter

    settings, db, connection = _context()
    provider = make_provider(settings, connection)
    limiter = RateLimiter(connection, provider.name, settings.sender_rate_per_s)
    callback = settings.public_base_url + "/webhooks/twilio/status"
    with db.sessionmaker() as session:
        result = send(session, message_ids, provider, limiter, status_callback=callback)
    if result.retry:
        from datetime import timedelta

        queue(connection).enqueue_in(timedelta(seconds=5), send_batch, run_id, result.retry)
    return {
        "submitted": result.submitted,
        "skipped": result.skipped,
        "failed": result.failed,
        "retry": len(result.retry),
    }
