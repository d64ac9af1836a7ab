"""Broadcast one template to 100k contacts through real RQ workers and the Twilio adapter.

End to end, as a user launches a campaign: `lifecycle.launch` and `jobs.enqueue_dispatch`,
then `flask worker` processes freeze the audience, enqueue send batches and send each
message through twilio-python to the local stub of Twilio's API (tests/twilio_stub.py),
until the campaign is completed. msg/s = messages submitted / seconds from launch to
completion. The sender rate limit is lifted (SENDER_RATE_PER_S=0); SEND_CONCURRENCY comes
from the environment (default 32), so it can be varied from the command line.

Also measured: each worker's peak memory (the worker, which runs its jobs itself, and the
scheduler process RQ forks from one of them, sampled every 200 ms from /proc: PSS summed, and
each one's RSS), the CPU each process family used per message, and, in the same run, the naive
way: one RQ job per message (`jobs.send_batch(run_id, [message_id])`) over the first contacts,
timed from launch (the freeze included) until every row is decided. Every run is checked: stub
count == submitted == audience, each recipient got exactly one message, the stored counters
equal a recount. This machine's PostgreSQL runs without autovacuum, so the script vacuums the
ledger before each run.

    python bench/broadcast.py [--recipients 100000] [--workers 3] [--repeat 3] [--baseline 2000]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import astuple, dataclass, field
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from redis import Redis  # noqa: E402
from rq.registry import StartedJobRegistry  # noqa: E402
from sqlalchemy import exists, func, select, text  # noqa: E402
from sqlalchemy.engine import Connection  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from bench._common import (  # noqa: E402
    CLK_TCK,
    PG_URL,
    REDIS_URL,
    SECRET_KEY,
    Processes,
    check_alone,
    cpu_snapshot,
    fresh_app,
    median,
    proc_stat,
    table,
)
from chatman import jobs, queues  # noqa: E402
from chatman.campaigns import lifecycle  # noqa: E402
from chatman.campaigns.dispatch import BATCH_SIZE, freeze_run  # noqa: E402
from chatman.campaigns.models import Campaign  # noqa: E402
from chatman.config import normalise_database_url  # noqa: E402
from chatman.contacts import segments  # noqa: E402
from chatman.contacts.models import Contact  # noqa: E402
from chatman.db import Database  # noqa: E402
from chatman.ledger import counters, states  # noqa: E402
from chatman.ledger.models import Message  # noqa: E402
from chatman.messaging.templates import save_template  # noqa: E402
from tests.twilio_stub import StubProcess, start_stub  # noqa: E402

ACCOUNT_SID = "AC" + "b" * 32
CONTENT_SID = "HX" + "c" * 32
SAMPLE_S = 0.2  # memory sampling period (smaps_rollup walks page tables: not free)
POLL_S = 0.2  # completion polling period: adds at most this to a measured run
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")

FILL = """
INSERT INTO contacts (phone, name, attributes, timezone, dnd, created_at, updated_at)
SELECT '+9198' || lpad(g::text, 8, '0'), 'Customer ' || g, '{}'::jsonb, 'Asia/Kolkata', false, now(), now()
FROM generate_series(1, :n) AS g
"""


class BenchError(RuntimeError):
    """No trustworthy figure: a check failed, a worker died, a job failed or a run timed out."""


# -- processes ------------------------------------------------------------------------------------


@dataclass
class Peaks:
    family_pss: float = 0.0  # the headline: what one `flask worker` and its children cost at once
    worker_rss: float = 0.0
    child_rss: float = 0.0  # the largest child: RQ's scheduler process

    def merge(self, other: Peaks) -> Peaks:
        return Peaks(*(max(a, b) for a, b in zip(astuple(self), astuple(other), strict=True)))


def _pss_mb(pid: int) -> float:
    """Proportional set size: a page shared copy-on-write by the worker and a child it forked
    is counted half in each, so the sum over a family is what it costs (RSS would count it twice)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1000
    except OSError:
        pass
    return 0.0


class RssSampler:
    """Every SAMPLE_S, the memory of each worker and of its children (RQ's scheduler; a work
    horse, were the worker one that forks for each job)."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = set(pids)
        self.peaks = Peaks()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def take(self) -> Peaks:
        """The peaks since the last take; sampling starts afresh."""
        with self._lock:
            peaks, self.peaks = self.peaks, Peaks()
        return peaks

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            for pid in self.pids:
                sample = Peaks(worker_rss=_rss_mb(pid))
                sample.family_pss = _pss_mb(pid)
                for child in _children(pid):
                    sample.family_pss += _pss_mb(child)
                    sample.child_rss = max(sample.child_rss, _rss_mb(child))
                with self._lock:
                    self.peaks = self.peaks.merge(sample)


def _children(pid: int) -> list[int]:
    """The scheduler (and any work horse): RQ forks them from the worker's main thread, and
    neither forks again. Cheaper than a scan of /proc, which would cost the run it measures."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(child) for child in f.read().split()]
    except OSError:
        return []


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE_BYTES / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


def worker_env(database_url: str, stub: StubProcess) -> dict[str, str]:
    """Everything that decides where a worker reads and sends is pinned, so a shell's
    settings or a .env never point it at a real provider or database."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": SECRET_KEY,
        "SENDER_RATE_PER_S": "0",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": "bench-auth-token",
        "TWILIO_WHATSAPP_FROM": "+14155238886",
        "TWILIO_MESSAGING_SERVICE_SID": "",
        "TWILIO_API_BASE_URL": stub.base_url,
        "PUBLIC_BASE_URL": "http://127.0.0.1:5000",
        "SIMULATOR_CALLBACKS": "false",
    }


def all_queues(redis: Redis) -> list:
    return [queues.queue(redis, name) for name in queues.QUEUES]


def log_tail(procs: Processes, lines: int = 15) -> str:
    # A job's line carries its arguments (250 ids): cut them short.
    return "\n".join(
        f"--- {name}\n" + "\n".join(line[:300] for line in procs.log_tail(name, lines).splitlines())
        for name in procs.started
        if name.startswith("worker")
    )


def start_workers(procs: Processes, count: int, redis: Redis) -> list[subprocess.Popen]:
    workers = [
        procs.start(f"worker-{i + 1}", [sys.executable, "-m", "flask", "--app", "app", "worker"])
        for i in range(count)
    ]
    Watch(workers, procs, redis).until(
        lambda: jobs.worker_count(redis) >= count, 60, "the workers to register"
    )
    return workers


@dataclass
class Watch:
    """Waits for a condition, failing early and loudly when it can no longer come true."""

    workers: list[subprocess.Popen]
    procs: Processes
    redis: Redis

    def until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            for w in self.workers:
                if w.poll() is not None:
                    raise BenchError(f"worker {w.pid} exited with {w.returncode}\n{log_tail(self.procs)}")
            # Another benchmark's worker on this Redis db would take our jobs, and a failed job
            # leaves rows that no one will decide: say so now, not at the timeout.
            if jobs.worker_count(self.redis) > len(self.workers):
                raise BenchError(f"a worker that is not ours is registered on {REDIS_URL}")
            for q in all_queues(self.redis):
                failed = q.failed_job_registry
                if failed.count:
                    example = failed.get_job_ids()[0]
                    raise BenchError(
                        f"{failed.count} RQ job(s) failed, e.g. {example}\n{log_tail(self.procs)}"
                    )
            if time.monotonic() > deadline:
                raise BenchError(
                    f"timed out after {timeout_s:.0f} s waiting for {what}\n{log_tail(self.procs)}"
                )
            time.sleep(POLL_S)


# -- the measured runs ----------------------------------------------------------------------------


@dataclass
class Measured:
    run_id: int
    messages: int
    seconds: float
    peaks: Peaks = field(default_factory=Peaks)
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds used during the run, by family

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


@dataclass
class Bench:
    db: Database
    redis: Redis
    stub: StubProcess
    sampler: RssSampler
    watch: Watch
    poll: Connection  # autocommit: each poll sees what the workers committed
    template_id: int
    timeout_s: float
    campaigns: int = 0

    def _start(self, session: Session, segment_id: int, label: str) -> int:
        """A new campaign over the segment, on an empty stub and idle workers."""
        self.campaigns += 1
        campaign = lifecycle.create_campaign(
            session,
            {
                "name": f"bench {label} {self.campaigns}",
                "template_id": self.template_id,
                "include_segments": [segment_id],
            },
        )
        session.commit()
        self.stub.reset()
        # The last jobs of the previous run end after its last row is decided; wait for them
        # so that this run has the workers to itself and its RSS peak is its own.
        every = all_queues(self.redis)
        self.watch.until(
            lambda: all(q.count == 0 and StartedJobRegistry(queue=q).count == 0 for q in every),
            60,
            "the queues to drain",
        )
        # This machine's PostgreSQL runs without autovacuum: clear the last run's dead row
        # versions as autovacuum would, or each run pays for the ones before it.
        self.poll.execute(text("VACUUM ANALYZE messages"))
        self.sampler.take()
        return campaign.id

    def broadcast(self, segment_id: int) -> Measured:
        """The product's path: launch, enqueue the dispatch, wait until the campaign is completed."""
        with self.db.sessionmaker() as session:
            campaign_id = self._start(session, segment_id, "broadcast")
            start, cpu = time.perf_counter(), self.cpu()
            run_id = lifecycle.launch(session, campaign_id).id
            session.commit()
            jobs.enqueue_dispatch(self.redis, run_id)
            status = select(Campaign.status).where(Campaign.id == campaign_id)
            self.watch.until(
                lambda: self.poll.scalar(status) == "completed", self.timeout_s, f"campaign {campaign_id}"
            )
            elapsed = time.perf_counter() - start
            return Measured(
                run_id, self._submitted(run_id), elapsed, self.sampler.take(), self.cpu_since(cpu)
            )

    def naive(self, segment_id: int) -> Measured:
        """The baseline: the same run, but one RQ job per message."""
        with self.db.sessionmaker() as session:
            campaign_id = self._start(session, segment_id, "naive")
            start, cpu = time.perf_counter(), self.cpu()
            run_id = lifecycle.launch(session, campaign_id).id
            session.commit()
            freeze_run(session, run_id)
            ids = session.scalars(
                select(Message.id).where(Message.run_id == run_id, Message.status == states.PENDING)
            ).all()
        q = queues.queue(self.redis)
        prepared = [
            q.prepare_data(jobs.send_batch, args=(run_id, [i]), result_ttl=0, timeout=jobs.BATCH_TIMEOUT_S)
            for i in ids
        ]
        for at in range(0, len(prepared), 500):  # the chunk size dispatch_run enqueues with
            q.enqueue_many(prepared[at : at + 500])
        undecided = select(
            exists().where(Message.run_id == run_id, Message.status.in_((states.PENDING, states.CLAIMED)))
        )
        self.watch.until(lambda: not self.poll.scalar(undecided), self.timeout_s, f"run {run_id}")
        elapsed = time.perf_counter() - start
        return Measured(run_id, self._submitted(run_id), elapsed, self.sampler.take(), self.cpu_since(cpu))

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far: the workers (their children included), the stub, PostgreSQL, Redis,
        this script (its polling and sampling), and the machine as a whole."""
        workers = {f"worker {w.pid}": w.pid for w in self.watch.workers}
        used = cpu_snapshot(workers)
        stub = proc_stat(str(self.stub.process.pid))
        return {
            "workers": sum(used.pop(name) for name in workers),
            "stub": sum(int(v) for v in stub[1][11:13]) / CLK_TCK if stub else 0.0,
            "bench": time.process_time(),
        } | used

    def cpu_since(self, before: dict[str, float]) -> dict[str, float]:
        return {family: used - before[family] for family, used in self.cpu().items()}

    def _submitted(self, run_id: int) -> int:
        return self.poll.scalar(
            select(func.count())
            .select_from(Message)
            .where(Message.run_id == run_id, Message.status == states.SUBMITTED)
        )

    def verify(self, measured: Measured, audience: set[str]) -> None:
        """What a user would check: the provider got one message per contact, the ledger
        says so, and the report's counters agree with the rows."""
        at_stub = self.stub.messages()
        received = set(at_stub["by_to"])
        problems = []
        if not at_stub["count"] == measured.messages == len(audience):
            problems.append(
                f"stub received {at_stub['count']:,}, ledger submitted {measured.messages:,}, "
                f"audience {len(audience):,}"
            )
        if received != audience:
            problems.append(
                f"{len(audience - received):,} contacts got nothing, "
                f"{len(received - audience):,} numbers outside the audience got messages"
            )
        repeated = sum(1 for n in at_stub["by_to"].values() if n != 1)
        if repeated:
            problems.append(f"{repeated:,} contacts got more than one message")
        with self.db.sessionmaker() as session:
            campaign_id = session.scalar(select(Message.campaign_id).where(Message.run_id == measured.run_id))
            diffs = counters.differences(session, campaign_id)
        if diffs:
            problems.append(f"{len(diffs)} counters differ from the recount, e.g. {diffs[:3]}")
        if problems:
            raise BenchError(f"run {measured.run_id}: " + "; ".join(problems))


def setup(db: Database, recipients: int, baseline: int) -> tuple[int, int, int, int]:
    """Contacts, two dynamic segments (everyone; the first `baseline` contacts) and an
    approved Twilio content template. Returns (template, everyone, first, last id of first)."""
    with db.sessionmaker() as session:
        session.execute(text(FILL), {"n": recipients})
        session.commit()
        first_ids = select(Contact.id).order_by(Contact.id).limit(baseline).subquery()
        last_id = session.scalar(select(func.max(first_ids.c.id)))
        everyone = segments.create_segment(
            session,
            {
                "name": "everyone",
                "kind": "dynamic",
                "rules": {"all": [{"field": "phone", "op": "starts_with", "value": "+91"}]},
            },
        )
        first = segments.create_segment(
            session,
            {
                "name": "first",
                "kind": "dynamic",
                "rules": {"all": [{"field": "id", "op": "lte", "value": last_id}]},
            },
        )
        template = save_template(
            session,
            {
                "name": "order_update",
                "language": "en",
                "category": "utility",
                "status": "approved",
                "body": "Hi {{first}}, your order is on its way",
                "content_sid": CONTENT_SID,
                "variables": {"first": {"field": "name"}},
            },
        )
        session.commit()
        ids = (template.id, everyone.id, first.id, last_id)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE contacts"))
    return ids


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up, as Ctrl-C does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--baseline", type=int, default=2000, help="contacts in the naive run")
    parser.add_argument("--baseline-repeat", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    args = parser.parse_args()
    args.baseline = min(args.baseline, args.recipients)
    logging.disable(logging.INFO)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    redis = Redis.from_url(REDIS_URL)
    check_alone(redis, PG_URL)
    redis.flushdb()  # no jobs, workers or locks left by an earlier, interrupted run
    app = fresh_app(PG_URL)
    db: Database = app.extensions["chatman.db"]
    start = time.perf_counter()
    template_id, everyone, first, last_id = setup(db, args.recipients, args.baseline)
    build_s = time.perf_counter() - start
    with db.sessionmaker() as session:
        all_phones = set(session.scalars(select(Contact.phone)))
        first_phones = set(session.scalars(select(Contact.phone).where(Contact.id <= last_id)))

    log_dir = Path(tempfile.mkdtemp(prefix="chatman-bench-broadcast-"))
    print(f"worker logs in {log_dir}", file=sys.stderr)
    broadcasts: list[Measured] = []
    naives: list[Measured] = []
    with contextlib.ExitStack() as stack:
        stub = stack.enter_context(start_stub())
        procs = Processes(log_dir, worker_env(normalise_database_url(PG_URL), stub))
        stack.callback(procs.stop_all)
        workers = start_workers(procs, args.workers, redis)
        sampler = RssSampler([w.pid for w in workers])
        sampler.start()
        stack.callback(sampler.stop)
        poll = stack.enter_context(db.engine.connect().execution_options(isolation_level="AUTOCOMMIT"))
        bench = Bench(db, redis, stub, sampler, Watch(workers, procs, redis), poll, template_id, args.timeout)
        # Interleaved, so that both methods see the same (noisy) machine.
        for i in range(max(args.repeat, args.baseline_repeat)):
            if i < args.baseline_repeat:
                naives.append(measured := bench.naive(first))
                bench.verify(measured, first_phones)
                print(f"naive run {i + 1}: {measured.rate:,.0f} msg/s", file=sys.stderr)
            if i < args.repeat:
                broadcasts.append(measured := bench.broadcast(everyone))
                bench.verify(measured, all_phones)
                print(f"broadcast run {i + 1}: {measured.rate:,.0f} msg/s", file=sys.stderr)
        with db.sessionmaker() as session:
            diffs = counters.differences(session)
        if diffs:
            raise BenchError(f"{len(diffs)} counters differ from the recount, e.g. {diffs[:3]}")
    db.dispose()

    concurrency = procs.env.get("SEND_CONCURRENCY") or "32"
    naive_rate = median([m.rate for m in naives])
    rows = []
    for method, runs in (
        ("naive: one RQ job per message", naives),
        (f"broadcast: dispatch_run, batches of {BATCH_SIZE}", broadcasts),
    ):
        peaks = Peaks()
        for m in runs:
            peaks = peaks.merge(m.peaks)
        rate = median([m.rate for m in runs])
        rows.append(
            [
                method,
                f"{runs[0].messages:,}",
                f"{median([m.seconds for m in runs]):.1f}",
                f"{rate:,.0f}",
                f"{peaks.family_pss:.0f}",
                f"{peaks.worker_rss:.0f} / {peaks.child_rss:.0f}",
                f"{rate / naive_rate:.1f}x",
            ]
        )
    all_peaks = Peaks()
    for m in broadcasts + naives:
        all_peaks = all_peaks.merge(m.peaks)
    print(
        f"Broadcast of one content template to {args.recipients:,} contacts (built in {build_s:.1f} s) "
        f"by {args.workers} `flask worker` process(es), SEND_CONCURRENCY={concurrency}, to the local "
        f"Twilio stub, rate limit lifted; median of {args.repeat} run(s); baseline over the first "
        f"{args.baseline:,} contacts, {args.baseline_repeat} run(s)"
    )
    print(
        table(
            [
                "method",
                "messages",
                "seconds",
                "msg/s",
                "peak PSS MB, worker + children",
                "peak RSS MB, worker / child",
                "vs baseline",
            ],
            rows,
        )
    )
    families = ["workers", "stub", "postgres", "redis", "bench", "machine", "stolen"]
    cpu_rows = [
        [method]
        + [f"{median([m.cpu[f] / m.messages * 1000 for m in runs]):.2f}" for f in families]
        + [f"{median([m.cpu['machine'] / (m.seconds * os.cpu_count()) for m in runs]):.0%}"]
        for method, runs in (("naive", naives), ("broadcast", broadcasts))
    ]
    print("CPU ms per message (medians over runs): workers include their children; bench = this script")
    print(table(["method", *families, "machine busy"], cpu_rows))
    print(
        f"runs, msg/s: broadcast {', '.join(f'{m.rate:,.0f}' for m in broadcasts)}; "
        f"naive {', '.join(f'{m.rate:,.0f}' for m in naives)}. "
        f"Memory sampled every {SAMPLE_S * 1000:.0f} ms: "
        "PSS summed over one worker and its children (RQ's scheduler) is what they cost "
        "together (pages shared copy-on-write counted once); RSS is per process, the largest child shown"
    )
    print(f"broadcast_msgs_per_s: {median([m.rate for m in broadcasts]):.0f}")
    print(f"naive_msgs_per_s: {naive_rate:.0f}")
    # The family's PSS, unless one process alone holds more (pages it shares outside the family).
    peak = max(all_peaks.family_pss, all_peaks.worker_rss, all_peaks.child_rss)
    print(f"worker_peak_rss_mb: {peak:.0f}")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as error:
        sys.exit(f"FAILED: {error}")
    except KeyboardInterrupt:
        sys.exit("interrupted; the workers and the stub are stopped")
