"""One job per name, whatever dies; jobs of a run counted while they are being enqueued."""

from __future__ import annotations

import time

from rq import Queue

from chatman import inbox, queues


def noop() -> None:
    pass


def test_a_failed_or_dead_holder_does_not_lock_its_name_out(redis):
    assert queues.enqueue_once(redis, noop, "thing")
    assert not queues.enqueue_once(redis, noop, "thing")  # queued: one is enough
    (job,) = Queue("system", connection=redis).jobs
    job.set_status("failed")
    assert queues.enqueue_once(redis, noop, "thing")  # a failed one is gone
    job = Queue("system", connection=redis).jobs[-1]
    job.set_status("started")
    job.worker_name = "w-dead"
    job.save()
    assert queues.enqueue_once(redis, noop, "thing")  # its worker does not say it lives
    job = Queue("system", connection=redis).jobs[-1]
    job.set_status("started")
    job.worker_name = "w-alive"
    job.save()
    redis.set(queues.ALIVE + "w-alive", 1, ex=queues.ALIVE_TTL_S)
    assert not queues.enqueue_once(redis, noop, "thing")  # running on a live worker


def test_a_job_being_enqueued_counts_as_its_runs_for_a_few_seconds(redis):
    queues.track(redis, "run-1", ["not-there-yet"])
    assert queues.has_live_job(redis, "run-1")
    redis.zadd(queues.TRACK + "run-1", {"not-there-yet": time.time() - queues.ENQUEUING_S - 1})
    assert not queues.has_live_job(redis, "run-1")
    assert redis.zcard(queues.TRACK + "run-1") == 0  # forgotten


def test_set_aside_callbacks_can_be_put_back_in_line(redis):
    inbox.append(redis, inbox.STATUS, {"MessageSid": "SM1", "MessageStatus": "sent"}, message_id="7")
    (entry,) = inbox.read(redis, inbox.STATUS, "me")
    inbox.set_aside(redis, inbox.STATUS, [(entry, "refused")])
    assert (inbox.backlog(redis, inbox.STATUS), inbox.set_aside_count(redis, inbox.STATUS)) == (0, 1)
    assert inbox.retry_set_aside(redis, inbox.STATUS) == 1
    (again,) = inbox.read(redis, inbox.STATUS, "me")
    assert (again.fields(), again.message_id) == (entry.fields(), "7")
    assert inbox.set_aside_count(redis, inbox.STATUS) == 0
