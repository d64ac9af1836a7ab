"""RQ queues and the worker entry point. Jobs stay thin: they call one domain function."""

from __future__ import annotations

from redis import Redis
from rq import Queue, Worker

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
