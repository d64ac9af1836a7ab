from __future__ import annotations

from datetime import datetime

import pytest

from chatman import jobs
from chatman.clock import (
    advance_enrollments,
    launch_due_campaigns,
    release_held_messages,
    sync_enrollments,
    tick,
)
from chatman.timeutils import pinned
from tests.conftest import twilio_env


@pytest.fixture
def drive(app, session, redis, in_process_jobs, twilio_stub):
    """drive(now): the clock's scheduling tasks tick at `now`, then a burst worker runs the
    jobs they enqueued in this process, the wall clock read as `now` throughout (no sleeping)."""
    in_process_jobs(**twilio_env(twilio_stub))
    db = app.extensions["chatman.db"]
    tasks = [
        launch_due_campaigns(db, redis),
        sync_enrollments(db, redis, every_s=6 * 3600),
        advance_enrollments(db, redis),
        release_held_messages(db, redis),
    ]

    def run(now: datetime) -> None:
        with pinned(now):
            if tick(redis, tasks, now):
                jobs.run_worker(redis, burst=True)
        session.expire_all()

    return run
