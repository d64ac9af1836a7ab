"""The clock with 100k drip enrollments due at once, and with nothing due, in PostgreSQL.

Builds 100k contacts and a running two-step drip with every contact enrolled and its first
step due. `tick_100k_s` is the clock's enrollment task (`clock.advance_enrollments`) claiming
them all by conditional UPDATE, 500 a batch, and enqueuing one RQ job per batch, as one tick
does; baseline in the same run: the floor, one SELECT of every due id. Then the jobs are run
in this process (`drips.advance`, inserting the 100k ledger rows of step 1 and scheduling
step 2), reported as advance_100k_s. `idle_tick_ms` is a tick of every default clock task with
the 100k enrollments waiting and none due (median of 50 ticks). The claim is repeated
`--repeat` times on a reset table; medians.

    python bench/clock.py [--enrollments 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis  # noqa: E402
from rq import Queue  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from bench._common import PG_URL, REDIS_URL, check_alone, fresh_app, median, table  # noqa: E402
from chatman import clock  # noqa: E402
from chatman.campaigns import drips, lifecycle  # noqa: E402
from chatman.campaigns.models import Enrollment  # noqa: E402
from chatman.ledger import counters  # noqa: E402
from chatman.ledger.models import Message  # noqa: E402
from chatman.queues import DEFAULT  # noqa: E402
from chatman.timeutils import utcnow  # noqa: E402

FILL = """
INSERT INTO contacts (phone, name, attributes, timezone, dnd, created_at, updated_at)
SELECT '+9198' || lpad(g::text, 8, '0'), 'Customer ' || g, '{}'::jsonb, 'Asia/Kolkata', false, now(), now()
FROM generate_series(1, :n) AS g
"""
ENROLL = """
INSERT INTO enrollments (campaign_id, contact_id, run_id, entry, source, status, next_step,
                         waiting_since, next_due_at, enrolled_at)
SELECT :campaign, id, :run, 1, 'api', 'active', 0, :due, :due, :due FROM contacts
"""
RESET = "UPDATE enrollments SET next_due_at = :due"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.INFO)

    redis = Redis.from_url(REDIS_URL)
    check_alone(redis)
    redis.flushdb()
    app = fresh_app(PG_URL)
    db = app.extensions["chatman.db"]
    settings = app.extensions["chatman.settings"]
    now = utcnow()
    due = now - timedelta(minutes=1)
    build = time.perf_counter()
    with db.session() as session:
        session.execute(text(FILL), {"n": args.enrollments})
        campaign = lifecycle.create_campaign(
            session,
            {
                "name": "bench",
                "kind": "drip",
                "steps": [{"body": "hi"}, {"body": "day 2", "wait": {"days": 1}}],
            },
        )
        lifecycle.launch(session, campaign.id, now=now)
        run_id = drips.entry_run(session, campaign.id, "entry-1", now)
        session.execute(text(ENROLL), {"campaign": campaign.id, "run": run_id, "due": due})
        campaign.members_synced_at = now  # its segment members are in: the idle tick has nothing to do
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE contacts, enrollments"))
    build_s = time.perf_counter() - build

    task = clock.advance_enrollments(db, redis, budget_s=3600)
    floor, ticks = [], []
    for _ in range(args.repeat):
        with db.session() as session:
            session.execute(text(RESET), {"due": due})
        redis.flushdb()
        with db.sessionmaker() as session:
            start = time.perf_counter()
            ids = session.scalars(
                select(Enrollment.id).where(Enrollment.status == "active", Enrollment.next_due_at <= now)
            ).all()
            floor.append(time.perf_counter() - start)
        assert len(ids) == args.enrollments
        start = time.perf_counter()
        jobs_enqueued = task(now)
        ticks.append(time.perf_counter() - start)
        assert jobs_enqueued == -(-args.enrollments // drips.ADVANCE_BATCH), jobs_enqueued
        with db.sessionmaker() as session:
            assert not drips.any_due(session, now)

    # The jobs of the last tick, run here one after another (a worker's work, without RQ).
    batches = [job.args[0] for job in Queue(DEFAULT, connection=redis).get_jobs()]
    start = time.perf_counter()
    sends = 0
    for batch in batches:  # a session per job, as a worker runs them
        with db.sessionmaker() as session:
            sends += sum(len(ids) for ids in drips.advance(session, batch, now).to_send.values())
    advance_s = time.perf_counter() - start
    with db.sessionmaker() as session:
        rows = session.scalar(select(func.count()).select_from(Message))
        waiting = session.scalar(
            select(func.count()).select_from(Enrollment).where(Enrollment.next_step == 1)
        )
    assert sends == rows == waiting == args.enrollments, (sends, rows, waiting)

    with db.sessionmaker() as session:  # the counters the jobs wrote, folded (else that is due)
        while counters.squash(session):
            session.commit()
        session.commit()
    redis.flushdb()
    per_task: dict[str, list[float]] = {}

    def timed(task: clock.TickTask) -> clock.TickTask:
        def run(at):
            start = time.perf_counter()
            try:
                return task(at)
            finally:
                per_task.setdefault(task.__name__, []).append(time.perf_counter() - start)

        run.__name__ = task.__name__
        return run

    tasks = [timed(t) for t in clock.default_tasks(db, redis, settings)]
    idle = []
    for _ in range(50):
        start = time.perf_counter()
        enqueued = clock.tick(redis, tasks, now)
        idle.append(time.perf_counter() - start)
        assert enqueued == 0, enqueued
    tick_s, floor_s, idle_ms = median(ticks), median(floor), median(idle) * 1000

    print(f"{args.enrollments:,} enrollments built in {build_s:.1f} s; medians of {args.repeat} runs")
    print(
        table(
            ["work", "seconds", "vs floor"],
            [
                ["SELECT every due id (floor)", f"{floor_s:.3f}", "1.0x"],
                [
                    f"clock tick: claim all, enqueue {len(batches)} jobs",
                    f"{tick_s:.3f}",
                    f"{tick_s / floor_s:.1f}x",
                ],
                [f"the jobs: step 1 of {args.enrollments:,} into the ledger", f"{advance_s:.3f}", ""],
                ["a tick of every clock task, nothing due (ms)", f"{idle_ms:.1f}", ""],
            ],
        )
    )
    print("the idle tick, task by task (median ms):")
    print(table(["task", "ms"], [[name, f"{median(times) * 1000:.1f}"] for name, times in per_task.items()]))
    print(f"tick_100k_s: {tick_s:.2f}")
    print(f"advance_100k_s: {advance_s:.2f}")
    print(f"idle_tick_ms: {idle_ms:.1f}")
    db.dispose()


if __name__ == "__main__":
    main()
