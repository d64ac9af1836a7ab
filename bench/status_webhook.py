"""Signed Twilio status callbacks over HTTP, against the app as production runs it.

    python bench/status_webhook.py [--seconds 20] [--connections 16] [--repeat 3] [--messages 160000]
                                   [--sustained-seconds 300] [--sustained-load 0.7]
                                   [--access-log] [--no-clock] [--web-workers 2] [--threads 4]

A scratch PostgreSQL database (through the migrations) holds one campaign run of `--messages`
submitted messages. The app runs under gunicorn with the Procfile's web options (gthread,
2 workers x 4 threads; access log off unless `--access-log`), with one real RQ worker and the
clock (which re-kicks a drain that raced its end, as in production), on the bench Redis (db 14,
flushed). A separate load process POSTs pre-signed callbacks over `--connections` keep-alive
connections for `--seconds`, in two phases, interleaved `--repeat` times:

- baseline: signed forms without MessageStatus, which the endpoint rejects (400) right after
  the signature check, touching neither Redis nor the database: the web tier's floor;
- status callbacks: sent, delivered, read and some undelivered (63024), about 10 % of them
  twice, shuffled, answered 204 once appended to the status stream; each phase ends when the
  worker has applied the backlog (at most `--drain-timeout` s), so the next starts on a quiet app;
- sustained: status callbacks again, now at a steady `--sustained-load` (70 %) of the capacity
  the status phases measured, for `--sustained-seconds` (5 minutes): as a long broadcast's
  statuses come in. Each callback's lag, from the webhook's answer to the moment the worker
  applied it to its message, is read from `message_events` (received_at, applied_at).

Measured: accepted/s, p50/p99 latency and unexpected answers per phase (medians of the runs);
the worker's drain after each load (time, events/s); the sustained phase's lag, overall and
per 30 s window (it must not grow: a drain hands on to a fresh job, never meets its timeout);
whether anything was lost: every
(MessageSid, MessageStatus) that got a 2xx must be in `message_events`, each message must end
in the state its callbacks rank highest, and the counters must equal a recount. CPU use per
process family is read from /proc in each load window, to show where the machine's time went.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from redis import Redis  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from bench._common import (  # noqa: E402
    PG_URL,
    REDIS_URL,
    SECRET_KEY,
    Processes,
    check_alone,
    cpu_snapshot,
    free_port,
    fresh_app,
    median,
    session_cpu,
    table,
    wait_healthy,
)
from chatman import inbox  # noqa: E402
from chatman.config import normalise_database_url  # noqa: E402
from chatman.ledger import counters, states  # noqa: E402
from chatman.ledger.models import Message, MessageEvent  # noqa: E402
from chatman.timeutils import utcnow  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PATH = "/webhooks/twilio/status"
ACCOUNT_SID = "AC" + "0" * 32
# How WhatsApp messages end, with the callbacks Twilio sends on the way (weights sum to 1).
OUTCOMES: list[tuple[tuple[str, ...], float]] = [
    (("sent", "delivered", "read"), 0.50),
    (("sent", "delivered"), 0.33),
    (("sent", "undelivered"), 0.10),  # ErrorCode 63024: not a WhatsApp user
    (("sent",), 0.07),  # still on its way
]
DUPLICATE_RATE = 0.10  # Twilio retries a callback it got no answer to in time
# Rejected bodies repeat harmlessly, so the baseline cycles through this many.
BASELINE_POOL = 30_000
MAX_RATE = 5_000  # requests/s a phase is given bodies for; more is reported as exhausted
WARMUP_PER_CONNECTION = 10
FAMILIES = ("web", "worker", "clock", "client", "postgres", "redis")
CPU_ROWS = [
    ("web", "gunicorn (master and workers)"),
    ("worker", "RQ worker (and its scheduler)"),
    ("clock", "clock"),
    ("client", "load process (aiohttp)"),
    ("postgres", "PostgreSQL (every database)"),
    ("redis", "Redis (every db)"),
    ("other", "rest: other tenants, kernel threads"),
    ("machine", "machine busy, all cores"),
    ("stolen", "stolen by the hypervisor"),
]
LABELS = {
    "reject": "baseline: signed, rejected (400) after the check",
    "status": "status callbacks: appended to the stream (204)",
    "sustained": "sustained: status callbacks, paced",
}
LAG_WINDOW_S = 30

MESSAGES_SQL = """
WITH new_contacts AS (
    INSERT INTO contacts (phone, name, attributes, timezone, dnd, created_at, updated_at)
    SELECT '+9198' || lpad(g::text, 8, '0'), 'Customer ' || g, '{}'::jsonb, 'Asia/Kolkata', false,
           :now, :now
    FROM generate_series(0, :n - 1) AS g
    RETURNING id, phone
)
INSERT INTO messages (campaign_id, run_id, step_id, contact_id, status, provider_sid, attempts,
                      handed_at, submitted_at, created_at)
SELECT :campaign_id, :run_id, :step_id, id, 'submitted', 'SM' || lpad(substr(phone, 6), 32, '0'), 1,
       :now, :now, :now
FROM new_contacts
"""


def sid_of(index: int) -> str:
    """The provider sid MESSAGES_SQL gave message `index` (the factory's SM0.. shape)."""
    return f"SM{index:032d}"


# --- Callbacks ------------------------------------------------------------------------------


def plan_callbacks(messages: int, seed: int) -> list[tuple[int, str]]:
    """(message index, MessageStatus) in the order they will be posted."""
    rng = random.Random(seed)
    paths, weights = zip(*OUTCOMES, strict=True)
    plan = []
    for index, path in enumerate(rng.choices(paths, weights, k=messages)):
        for status in path:
            plan.append((index, status))
            if rng.random() < DUPLICATE_RATE:
                plan.append((index, status))
    rng.shuffle(plan)
    return plan


def callback_form(index: int, status: str | None) -> dict[str, str]:
    """Twilio's form fields for a WhatsApp status callback; no status: the baseline's form."""
    sid = sid_of(index)
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": "whatsapp:+14155238886",
        "To": f"whatsapp:+9198{index:08d}",
        "ChannelPrefix": "whatsapp",
        "ApiVersion": "2010-04-01",
    }
    if status is not None:
        form |= {"MessageStatus": status, "SmsStatus": status}
    if status in ("failed", "undelivered"):
        form |= {"ErrorCode": "63024", "ErrorMessage": "Invalid message recipient"}
    return form


# --- The load process -----------------------------------------------------------------------


@dataclass
class LoadSpec:
    kind: str  # "status" or "reject"
    url: str
    key: str
    redis_url: str
    messages: int
    seed: int
    seconds: float
    connections: int
    out: str
    drain_timeout: float
    sessions: dict[str, int]  # process families whose CPU use is sampled, by session id
    offset: int = 0  # where in the plan this phase starts: earlier phases sent what is before
    rate: float | None = None  # requests/s, paced; None: each connection as fast as it is answered


def run_load(spec: LoadSpec) -> None:
    """The load process: sign every body first, post for `spec.seconds`, then time the drain."""
    validator = RequestValidator(spec.key)
    plan = plan_callbacks(spec.messages, spec.seed)
    if spec.kind == "reject":
        plan = [(index, None) for index, _ in plan[:BASELINE_POOL]]
    else:
        # Signing takes ~45 us a body: only as many as this phase could possibly send.
        most = int(spec.seconds * (spec.rate * 1.05 if spec.rate else MAX_RATE))
        plan = plan[spec.offset : spec.offset + most]
    requests = [signed(validator, spec.url, callback_form(index, status)) for index, status in plan]
    warmup = [
        signed(validator, spec.url, callback_form(index, None))
        for index in range(spec.connections * WARMUP_PER_CONNECTION)
    ]
    result = asyncio.run(_drive(spec, requests, warmup, cycle=spec.kind == "reject"))
    # The drain is timed here, where the end of the load is known to the millisecond.
    connection = Redis.from_url(spec.redis_url)
    result["backlog_at_end"] = inbox.backlog(connection, inbox.STATUS)
    deadline = time.monotonic() + spec.drain_timeout
    while (left := inbox.backlog(connection, inbox.STATUS)) and time.monotonic() < deadline:
        time.sleep(0.02)
    result["left"] = left
    result["drain_s"] = time.time() - result["end_wall"] if result["backlog_at_end"] else 0.0
    if spec.kind == "status":
        result["accepted"] = [plan[i] for i in result.pop("ok_indices")]
        result["next_offset"] = spec.offset + result["sent"]
    else:
        result.pop("ok_indices")
    Path(spec.out).write_text(json.dumps(result))


def signed(validator: RequestValidator, url: str, form: dict[str, str]) -> tuple[bytes, dict[str, str]]:
    """A request body and its headers, signed the way Twilio signs its callbacks."""
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": validator.compute_signature(url, form),
    }
    return urllib.parse.urlencode(form).encode(), headers


async def _drive(
    spec: LoadSpec,
    requests: list[tuple[bytes, dict[str, str]]],
    warmup: list[tuple[bytes, dict[str, str]]],
    cycle: bool,
) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=spec.connections)
    timeout = aiohttp.ClientTimeout(total=30)
    latencies: list[float] = []
    codes: list[int] = []
    indices: list[int] = []
    position = 0

    async def connection(
        work: list[tuple[bytes, dict[str, str]]], deadline: float, record: bool, repeat: bool
    ) -> None:
        """One keep-alive connection: the next request as soon as the last one is answered (or,
        paced, when its time comes)."""
        nonlocal position
        while time.perf_counter() < deadline:
            if position >= len(work) and not repeat:
                return
            i, position = position, position + 1
            if spec.rate and record:  # paced: request i leaves at its time, however the last went
                await asyncio.sleep(max(0.0, start + i / spec.rate - time.perf_counter()))
                if time.perf_counter() >= deadline:
                    return
            body, headers = work[i % len(work)]
            started = time.perf_counter()
            try:
                async with session.post(spec.url, data=body, headers=headers) as response:
                    await response.read()
                    code = response.status
            except (aiohttp.ClientError, TimeoutError):
                code = 0  # no answer: counted with the non-2xx
            if record:
                latencies.append(time.perf_counter() - started)
                codes.append(code)
                indices.append(i % len(work))

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Opens the keep-alive connections and wakes every gunicorn thread before the clock starts.
        await asyncio.gather(*(connection(warmup, math.inf, False, False) for _ in range(spec.connections)))
        position = 0
        # Sampled here, not by the parent: signing the bodies is outside the window.
        cpu_before, client_cpu = cpu_snapshot(spec.sessions), time.process_time()
        wall, start = time.time(), time.perf_counter()
        deadline = start + spec.seconds
        await asyncio.gather(*(connection(requests, deadline, True, cycle) for _ in range(spec.connections)))
        elapsed = time.perf_counter() - start
        client_cpu = time.process_time() - client_cpu
        cpu = {k: v - cpu_before[k] for k, v in cpu_snapshot(spec.sessions).items()} | {"client": client_cpu}
    return {
        "elapsed": elapsed,
        "start_wall": wall,
        "end_wall": wall + elapsed,
        "cpu": cpu,
        "latencies": latencies,
        "codes": codes,
        "ok_indices": [i for i, code in zip(indices, codes, strict=True) if 200 <= code < 300],
        "sent": position,
        "exhausted": not cycle and position >= len(requests),
    }


# --- Processes ------------------------------------------------------------------------------


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


# --- Phases ---------------------------------------------------------------------------------


@dataclass
class Phase:
    label: str
    expected: int  # the answer every request should get: 204, or 400 for the baseline
    result: dict[str, Any]

    @property
    def requests(self) -> int:
        return len(self.result["codes"])

    @property
    def cpu(self) -> dict[str, float]:
        return self.result["cpu"]

    def as_expected(self, code: int) -> bool:
        return 200 <= code < 300 if self.expected < 300 else code == self.expected

    @property
    def ok(self) -> int:
        return sum(1 for code in self.result["codes"] if self.as_expected(code))

    @property
    def rate(self) -> float:
        return self.ok / self.result["elapsed"]

    def latency_ms(self, q: float) -> float:
        return 1000 * quantile(self.result["latencies"], q)


def run_phase(procs: Processes, spec: LoadSpec, label: str, expected: int, timeout_s: float) -> Phase:
    Path(spec.out + ".spec").write_text(json.dumps(spec.__dict__))
    load = procs.start(f"load-{spec.kind}", [sys.executable, __file__, "--load-spec", spec.out + ".spec"])
    try:
        load.wait(timeout_s)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"load process still running after {timeout_s:.0f} s") from None
    procs.stop(f"load-{spec.kind}")
    if load.returncode != 0:
        raise RuntimeError(f"load process failed:\n{procs.log_tail(f'load-{spec.kind}')}")
    return Phase(label, expected, json.loads(Path(spec.out).read_text()))


def build_run(session: Session, messages: int) -> int:
    """One running campaign run whose `messages` messages were all submitted; its counters."""
    from chatman.campaigns.models import Campaign, CampaignRun, CampaignStep

    now = utcnow()
    campaign = Campaign(name="status webhook bench", status="running")
    session.add(campaign)
    session.flush()
    step = CampaignStep(campaign_id=campaign.id, position=0, body="hi")
    # The run's unique key is moving from occurrence_at to occurrence_key (migration 0004, in
    # progress): give it whichever the model has.
    key = {"occurrence_key": now.isoformat()} if hasattr(CampaignRun, "occurrence_key") else {}
    run = CampaignRun(campaign_id=campaign.id, occurrence_at=now, status="sending", **key)
    session.add_all([step, run])
    session.flush()
    session.execute(
        text(MESSAGES_SQL),
        {"n": messages, "now": now, "campaign_id": campaign.id, "run_id": run.id, "step_id": step.id},
    )
    counters.apply(session, [(campaign.id, run.id, step.id, {"targeted": messages, "submitted": messages})])
    session.commit()
    session.execute(text("ANALYZE contacts, messages"))  # fresh tables: give the planner real sizes
    session.commit()
    return campaign.id


def final_states(accepted: list[tuple[int, str]]) -> dict[str, str]:
    """The state each message must end in: the highest-ranked status it was told about."""
    best: dict[str, str] = {}
    for index, status in accepted:
        sid, state = sid_of(index), states.PROVIDER_STATUS[status]
        if state and (sid not in best or states.RANK[state] > states.RANK[best[sid]]):
            best[sid] = state
    return best


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile (nan of nothing)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def sustained_lags(session: Session, phase: Phase) -> list[tuple[float, float]]:
    """(seconds into the phase, lag in seconds) of each callback the phase brought: from the
    webhook's answer (received_at) to its message moving (applied_at); unapplied ones count as
    lagging until now."""
    start, end = phase.result["start_wall"], phase.result["end_wall"]
    rows = session.execute(
        select(MessageEvent.received_at, MessageEvent.applied_at).where(
            MessageEvent.received_at >= datetime.fromtimestamp(start, UTC),
            MessageEvent.received_at <= datetime.fromtimestamp(end + 1, UTC),
        )
    ).all()
    now = utcnow()
    return [(got.timestamp() - start, ((applied or now) - got).total_seconds()) for got, applied in rows]


def print_sustained(
    phase: Phase, lags: list[tuple[float, float]], jobs: tuple[int, int], capacity: float, args
) -> None:
    answered = Counter(phase.result["codes"])
    print(
        f"Sustained: {phase.rate:,.0f} callbacks/s accepted for {phase.result['elapsed']:.0f} s, paced at "
        f"{args.sustained_load:.0%} of the {capacity:,.0f}/s measured above; HTTP p99 "
        f"{phase.latency_ms(0.99):.1f} ms; answers {dict(sorted(answered.items()))}; drain jobs run / failed "
        f"{jobs[0]:,} / {jobs[1]:,}; lag = webhook's answer to the message moving in the ledger"
    )
    rows = []
    windows = int(math.ceil(phase.result["elapsed"] / LAG_WINDOW_S))
    for w in range(windows):
        inside = [lag for at, lag in lags if w * LAG_WINDOW_S <= at < (w + 1) * LAG_WINDOW_S]
        rows.append(
            [
                f"{w * LAG_WINDOW_S}-{(w + 1) * LAG_WINDOW_S}",
                f"{len(inside):,}",
                f"{quantile(inside, 0.5):.3f}",
                f"{quantile(inside, 0.99):.3f}",
                f"{max(inside, default=float('nan')):.3f}",
            ]
        )
    every = [lag for _, lag in lags]
    rows.append(["all", f"{len(every):,}", f"{quantile(every, 0.5):.3f}", f"{quantile(every, 0.99):.3f}",
                 f"{max(every, default=float('nan')):.3f}"])  # fmt: skip
    headers = ["seconds into the phase", "callbacks (distinct)", "lag p50 s", "lag p99 s", "lag max s"]
    print(table(headers, rows))


def worker_job_counts(connection: Redis) -> tuple[int, int]:
    from rq import Worker

    workers = Worker.all(connection=connection)
    return sum(w.successful_job_count for w in workers), sum(w.failed_job_count for w in workers)


@contextmanager
def running_app(procs: Processes, args: argparse.Namespace, port: int) -> Iterator[dict[str, int]]:
    web = [sys.executable, "-m", "gunicorn", "app:app", "--bind", f"127.0.0.1:{port}"]
    # The Procfile's web options; it logs every request to stdout, here only with --access-log.
    web += ["--worker-class", "gthread", "--workers", str(args.web_workers), "--threads", str(args.threads)]
    if args.access_log:
        web += ["--access-logfile", "-"]
    sessions = {"web": procs.start("web", web).pid}
    sessions["worker"] = procs.start("worker", [sys.executable, "-m", "flask", "--app", "app", "worker"]).pid
    if args.clock:
        sessions["clock"] = procs.start("clock", [sys.executable, "-m", "flask", "--app", "app", "clock"]).pid
    try:
        wait_healthy(f"http://127.0.0.1:{port}", procs)
        yield sessions
    finally:
        procs.stop_all()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="load time per phase")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--messages", type=int, default=200_000, help="submitted messages in the run")
    parser.add_argument("--sustained-seconds", type=float, default=300, help="sustained phase (0: none)")
    parser.add_argument("--sustained-load", type=float, default=0.7, help="of the measured capacity")
    parser.add_argument("--drain-timeout", type=float, default=120, help="wait for the worker at most")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers (Procfile: 2)")
    parser.add_argument("--threads", type=int, default=4, help="threads per gunicorn worker (Procfile: 4)")
    parser.add_argument("--access-log", action="store_true", help="log requests to stdout, as the Procfile")
    parser.add_argument("--no-clock", dest="clock", action="store_false", help="run without the clock")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of both phases")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--load-spec", help=argparse.SUPPRESS)  # internal: be the load process
    args = parser.parse_args()
    if args.load_spec:
        run_load(LoadSpec(**json.loads(Path(args.load_spec).read_text())))
        return
    logging.disable(logging.INFO)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_exit)  # so that `finally` stops every process we started
    # Ctrl-C too, even where the shell started this script with SIGINT ignored (`... &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)

    connection = Redis.from_url(REDIS_URL)
    check_alone(connection, PG_URL)
    connection.flushdb()  # no jobs, workers or stream left by an earlier, interrupted run
    app = fresh_app(PG_URL)
    db = app.extensions["chatman.db"]
    started = time.perf_counter()
    with db.sessionmaker() as session:
        campaign_id = build_run(session, args.messages)
        if differences := counters.differences(session):
            raise RuntimeError(f"counters differ from a recount before the run: {differences[:5]}")
    built_s = time.perf_counter() - started

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    key = SECRET_KEY
    # Every setting a .env could hold is pinned: no Twilio account, so webhooks are signed with
    # SECRET_KEY and nothing can reach a real provider.
    env = os.environ | {
        "DATABASE_URL": normalise_database_url(PG_URL),
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": key,
        "PUBLIC_BASE_URL": base_url,
        "TWILIO_ACCOUNT_SID": "",
        "TWILIO_AUTH_TOKEN": "",
        "TWILIO_WHATSAPP_FROM": "",
        "TWILIO_MESSAGING_SERVICE_SID": "",
        "SIMULATOR_CALLBACKS": "false",
        "TRUST_PROXY_HEADERS": "false",
    }
    planned = len(plan_callbacks(args.messages, args.seed))

    baselines: list[Phase] = []
    runs: list[Phase] = []
    sustained: Phase | None = None
    sustained_jobs = (0, 0)
    worker_cpu, jobs = 0.0, (0, 0)
    with tempfile.TemporaryDirectory(prefix="bench-status-") as tmp:
        procs = Processes(Path(tmp), env)
        try:
            with running_app(procs, args, port) as sessions:

                def phase(kind: str, offset: int = 0, seconds: float = args.seconds, rate=None) -> Phase:
                    spec = LoadSpec(
                        kind="reject" if kind == "reject" else "status",
                        url=base_url + PATH,
                        key=key,
                        redis_url=REDIS_URL,
                        messages=args.messages,
                        seed=args.seed,
                        seconds=seconds,
                        connections=args.connections,
                        out=f"{tmp}/{kind}.json",
                        drain_timeout=args.drain_timeout,
                        sessions=sessions,
                        offset=offset,
                        rate=rate,
                    )
                    expected = 400 if kind == "reject" else 204
                    # Signing the bodies (~45 us each) and waiting for the drain come on top.
                    timeout = seconds * (1 + (rate or MAX_RATE) * 100e-6) + args.drain_timeout + 60
                    return run_phase(procs, spec, LABELS[kind], expected, timeout)

                offset = 0
                # Interleaved, so that both phases see the same machine: its neighbours come and go.
                for _ in range(args.repeat):
                    baselines.append(phase("reject"))
                    if offset >= planned:
                        raise RuntimeError("every planned callback was sent already: raise --messages")
                    jobs_before, cpu_before = worker_job_counts(connection), session_cpu(sessions["worker"])
                    runs.append(phase("status", offset))  # it returns once the worker has drained
                    offset = runs[-1].result["next_offset"]
                    worker_cpu += session_cpu(sessions["worker"]) - cpu_before
                    jobs = tuple(
                        total + after - before
                        for total, after, before in zip(
                            jobs, worker_job_counts(connection), jobs_before, strict=True
                        )
                    )
                    if runs[-1].result["left"]:
                        break  # the next phases would run beside a drain: no fair figure
                if args.sustained_seconds and not runs[-1].result["left"]:
                    rate = args.sustained_load * median([p.rate for p in runs])
                    if offset + rate * args.sustained_seconds * 1.05 > planned:
                        raise RuntimeError("too few callbacks planned for a sustained phase: more --messages")
                    jobs_before = worker_job_counts(connection)
                    sustained = phase("sustained", offset, seconds=args.sustained_seconds, rate=rate)
                    sustained_jobs = tuple(
                        after - before
                        for after, before in zip(worker_job_counts(connection), jobs_before, strict=True)
                    )
        except BaseException:
            for name in ("web", "worker"):
                if (Path(tmp) / f"{name}.log").exists():
                    print(f"--- {name} log ---\n{procs.log_tail(name)}", file=sys.stderr)
            raise
        finally:
            procs.stop_all()

    loads = [*runs, *([sustained] if sustained else [])]
    accepted = [(index, status) for run in loads for index, status in run.result["accepted"]]
    pairs = {(sid_of(index), status) for index, status in accepted}
    with db.sessionmaker() as session:
        events = session.execute(select(MessageEvent.provider_sid, MessageEvent.status))
        stored = {(sid, status) for sid, status in events}
        unapplied = session.scalar(
            select(func.count()).select_from(MessageEvent).where(MessageEvent.applied.is_(False))
        )
        finals = {
            sid: status for sid, status in session.execute(select(Message.provider_sid, Message.status))
        }
        differences = counters.differences(session, campaign_id)
        lags = sustained_lags(session, sustained) if sustained else []
    db.dispose()
    lost = len(pairs - stored)
    wrong = sum(1 for sid, state in final_states(accepted).items() if finals.get(sid) != state)

    web = f"gunicorn gthread {args.web_workers} workers x {args.threads} threads"
    print(
        f"Signed Twilio status callbacks over {args.connections} keep-alive connections, {args.seconds:g} s "
        f"per phase, phases interleaved, median of {len(runs)}; {web} (access log "
        f"{'on' if args.access_log else 'off'}), 1 RQ worker{' and the clock' if args.clock else ''}; "
        f"{args.messages:,} submitted messages (built in {built_s:.1f} s), {planned:,} callbacks planned "
        f"(~10% twice, shuffled)"
    )
    baseline_rate = median([p.rate for p in baselines])
    callbacks_rate = median([p.rate for p in runs])
    callbacks_p99 = median([p.latency_ms(0.99) for p in runs])
    rows = []
    for phases in (baselines, runs):
        requests = sum(p.requests for p in phases)
        unexpected = Counter(code for p in phases for code in p.result["codes"] if not p.as_expected(code))
        rows.append(
            [
                phases[0].label,
                f"{requests:,}",
                ", ".join(f"{n:,} x {code or 'no answer'}" for code, n in sorted(unexpected.items())) or "0",
                f"{min(p.rate for p in phases):,.0f}",
                f"{median([p.rate for p in phases]):,.0f}",
                f"{median([p.latency_ms(0.50) for p in phases]):.1f}",
                f"{median([p.latency_ms(0.99) for p in phases]):.1f}",
                f"{1000 * sum(p.cpu['web'] for p in phases) / requests:.2f}",
                f"{median([p.rate for p in phases]) / baseline_rate:.2f}x",
            ]
        )
    print(
        table(
            ["phase", "requests", "unexpected answers", "req/s min", "req/s median", "p50 ms", "p99 ms",
             "web CPU ms/req", "vs baseline"],
            rows,
        )
    )  # fmt: skip
    if any(run.result["exhausted"] for run in runs):
        print(f"(a phase sent every body it had, {MAX_RATE:,}/s: its rate is a floor)")

    print()
    cpu_rows = []
    for family, label in CPU_ROWS:
        cells = [label]
        for phases in (baselines, runs):
            total = {f: sum(p.cpu.get(f, 0.0) for p in phases) for f in (*FAMILIES, "machine", "stolen")}
            total["other"] = total["machine"] - sum(total[f] for f in FAMILIES)
            cells.append(f"{total[family] / sum(p.result['elapsed'] for p in phases):.2f}")
        cpu_rows.append(cells)
    print(table(["CPU in the load windows, cores (of 2)", "baseline", "callbacks"], cpu_rows))

    print()

    def each(values: Sequence[object]) -> str:
        return ", ".join(str(v) for v in values)

    drained = [
        f"{r.result['backlog_at_end'] / r.result['drain_s']:,.0f}" if r.result["drain_s"] >= 0.1 else "-"
        for r in runs
    ]
    applied_rows = [
        ["callbacks accepted (2xx) / distinct (sid, status) pairs", f"{len(accepted):,} / {len(pairs):,}"],
        [
            "applied/s while the load ran, each run",
            each(f"{(r.ok - r.result['backlog_at_end']) / r.result['elapsed']:,.0f}" for r in runs),
        ],
        ["backlog when the load stopped, each run", each(f"{r.result['backlog_at_end']:,}" for r in runs)],
        ["drain after the load stopped (s), each run", each(f"{r.result['drain_s']:.2f}" for r in runs)],
        ["applied/s while draining, each run (- under 0.1 s)", each(drained)],
        ["events left in the stream (drain timed out)", f"{runs[-1].result['left']:,}"],
        ["drain jobs run / failed", f"{jobs[0]:,} / {jobs[1]:,}"],
        ["worker CPU ms per accepted callback", f"{1000 * worker_cpu / max(len(accepted), 1):.2f}"],
        ["rows in message_events / unapplied", f"{len(stored):,} / {unapplied:,}"],
        ["accepted pairs not in message_events (lost)", f"{lost:,}"],
        ["messages not in the state their callbacks rank highest", f"{wrong:,}"],
        ["counter differences from a recount", f"{len(differences):,}"],
    ]
    print(table(["applying", "value"], applied_rows))
    if sustained:
        print()
        print_sustained(sustained, lags, sustained_jobs, callbacks_rate, args)
    print(f"callbacks_per_s: {callbacks_rate:.0f}")
    print(f"callbacks_p99_ms: {callbacks_p99:.1f}")
    if sustained:
        print(f"status_lag_p99_s: {quantile([lag for _, lag in lags], 0.99):.2f}")
    print(f"callbacks_lost: {lost}")


if __name__ == "__main__":
    main()
