"""Status callbacks for a campaign with 3 rules, against the same callbacks for one without.

    python bench/rules.py [--messages 100000] [--repeat 3] [--workers 1] [--via-webhook 1000]
                          [--warmup 2000] [--timeout 1800] [--seed 1]

`--messages` is the number of status callbacks per measured side (the issue's "100k status
callbacks"). A scratch PostgreSQL database (through the migrations) holds, built before
anything is timed, one campaign run per side and round whose messages were all submitted
with provider sids (status_webhook.py's rows). Each run gets its callbacks as Twilio sends
them (status_webhook.py's mix: sent, delivered, read and some undelivered 63024, about 10 %
of them twice, shuffled; ~2.7 callbacks a message, so ~38,500 messages for 100k callbacks),
each carrying the ledger row id in its StatusCallback URL (`?m=`), as every send names it.

- no rules: a campaign without rules (other campaigns in the database have some);
- 3 rules: a campaign with three enabled rules, made through `rules.crud.create_rule`:
  {"status": "delivered"} -> set_attribute tier = warm;
  {"status": "read"} -> increment_attribute score by 1 (a number attribute);
  {"any": [{"status": "failed"}, {"status": "read"}]} -> add_to_segment (a static segment).
  With this mix they fire for ~83 %, ~50 % and ~60 % of the messages.

A side's callbacks are put in the status inbox (the Redis stream) first, untimed: the last
`--via-webhook` of them through the real signed webhook handler (Flask's test client, Twilio's
signature), the rest through `inbox.append`, the call that handler makes after it has parsed
the form, which the script parses too. Meanwhile the inbox's kick flag is held, as a queued
drain holds it, so nothing starts applying. Then the clock starts: `jobs.enqueue_status_drain`,
and `--workers` real `flask worker` processes (the Procfile runs one) apply the callbacks
with `jobs.apply_status_events`, which after each batch enqueues `jobs.evaluate_rules` for
the messages that rules look at (none on the no-rule side). The clock stops when the stream
is empty and no job is queued, scheduled or running (polled every 20 ms, quiet for 100 ms;
the time is that of the first quiet poll). events/s = callbacks / that time.

The sides alternate, A B, B A, A B, ..., each `--repeat` times, after one untimed warm-up run
with rules of `--warmup` callbacks; the database is vacuumed before each run (this machine's
PostgreSQL runs without autovacuum). Medians are reported, and the ratio of the medians. Each
run is checked: every (sid, status) pair kept and applied, each message in the state its
callbacks rank highest, counters equal to a recount, no callback set aside, no job failed,
and on the rules side each rule fired for exactly the messages that met it (once: a score of
2 would show an increment run twice), its contacts changed accordingly; on the other side,
nothing fired and no contact changed.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402
from redis import Redis  # noqa: E402
from rq.registry import ScheduledJobRegistry, StartedJobRegistry  # noqa: E402
from sqlalchemy import select, text  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from bench._common import (  # noqa: E402
    PG_URL,
    REDIS_URL,
    SECRET_KEY,
    Processes,
    check_alone,
    cpu_snapshot,
    fresh_app,
    median,
    table,
)
from bench.status_webhook import (  # noqa: E402
    DUPLICATE_RATE,
    OUTCOMES,
    PATH,
    callback_form,
    plan_callbacks,
    worker_job_counts,
)
from chatman import inbox, jobs, queues  # noqa: E402
from chatman.config import normalise_database_url  # noqa: E402
from chatman.contacts import segments  # noqa: E402
from chatman.contacts.attributes import define_attribute  # noqa: E402
from chatman.contacts.models import Contact, SegmentMember  # noqa: E402
from chatman.db import Database  # noqa: E402
from chatman.ledger import counters, states  # noqa: E402
from chatman.ledger.models import Message, MessageEvent  # noqa: E402
from chatman.messaging.twilio_events import parse_status  # noqa: E402
from chatman.rules import crud  # noqa: E402
from chatman.rules.models import Rule, RuleFiring  # noqa: E402
from chatman.timeutils import utcnow  # noqa: E402

NO_RULES, RULES = "no rules", "3 rules"
POLL_S = 0.02  # completion polling period
QUIET_S = 0.1  # how long everything must stay idle to count as done
# Callbacks a message gets on average (status_webhook.py's mix, duplicates included).
PER_MESSAGE = sum(len(path) * weight for path, weight in OUTCOMES) * (1 + DUPLICATE_RATE)
KICK = f"{inbox.STATUS}:kick"  # set while a drain is queued or running: appends start none


def rule_specs(segment_id: int) -> list[tuple[str, dict, list[dict]]]:
    """(name, condition, actions) of the rules side's three rules."""
    return [
        (
            "delivered: tier warm",
            {"status": "delivered"},
            [{"type": "set_attribute", "attribute": "tier", "value": "warm"}],
        ),
        (
            "read: score +1",
            {"status": "read"},
            [{"type": "increment_attribute", "attribute": "score", "by": 1}],
        ),
        (
            "failed or read: segment",
            {"any": [{"status": "failed"}, {"status": "read"}]},
            [{"type": "add_to_segment", "segment_id": segment_id}],
        ),
    ]


# Which final states meet each rule (states only move forward, and each message's callbacks
# follow one of OUTCOMES, so a rule met on the way is met at the end).
MEETS = {
    "delivered: tier warm": {states.DELIVERED, states.READ},
    "read: score +1": {states.READ},
    "failed or read: segment": {states.FAILED, states.READ},
}

MESSAGES_SQL = """
WITH new_contacts AS (
    INSERT INTO contacts (phone, name, attributes, timezone, dnd, created_at, updated_at)
    SELECT '+9198' || lpad(g::text, 8, '0'), 'Customer ' || g, '{}'::jsonb, 'Asia/Kolkata', false,
           :now, :now
    FROM generate_series(:first, :first + :n - 1) AS g
    RETURNING id, phone
)
INSERT INTO messages (campaign_id, run_id, step_id, contact_id, status, provider_sid, attempts,
                      handed_at, submitted_at, created_at)
SELECT :campaign_id, :run_id, :step_id, id, 'submitted', 'SM' || lpad(substr(phone, 6), 32, '0'), 1,
       :now, :now, :now
FROM new_contacts
"""


class BenchError(RuntimeError):
    """No trustworthy figure: a check failed, a worker died, a job failed or a run timed out."""


# --- What is built before the clock starts -------------------------------------------------


@dataclass
class Side:
    """One campaign run and the callbacks it will get."""

    kind: str  # NO_RULES or RULES
    campaign_id: int
    first: int  # index of its first message: sid SM{index:032d}, phone +9198{index:08d}
    messages: int
    plan: list[tuple[int, str]]  # (message index, MessageStatus) in the order they arrive
    ids: dict[int, int] = field(default_factory=dict)  # message index: ledger row id
    contacts: dict[int, int] = field(default_factory=dict)  # message index: contact id
    rules: dict[str, int] = field(default_factory=dict)  # rule name: id

    def finals(self) -> dict[int, str]:
        """The state each message must end in: the highest-ranked status it was told about."""
        best: dict[int, str] = {}
        for index, status in self.plan:
            state = states.PROVIDER_STATUS[status]
            if state and (index not in best or states.RANK[state] > states.RANK[best[index]]):
                best[index] = state
        return best


def side_plan(callbacks: int, seed: int) -> tuple[int, list[tuple[int, str]]]:
    """Enough messages for `callbacks` callbacks of the mix, and exactly that many of them
    (a shuffled plan cut short: a few messages miss a late callback, as if still on its way)."""
    messages = math.ceil(callbacks / PER_MESSAGE * 1.03)
    while len(plan := plan_callbacks(messages, seed)) < callbacks:
        messages = math.ceil(messages * 1.02) + 1
    return messages, plan[:callbacks]


def build_side(session: Session, kind: str, first: int, callbacks: int, seed: int, segment_id: int) -> Side:
    from chatman.campaigns.models import Campaign, CampaignRun, CampaignStep

    messages, plan = side_plan(callbacks, seed)
    now = utcnow()
    campaign = Campaign(name=f"rules bench: {kind} from {first}", status="running")
    session.add(campaign)
    session.flush()
    step = CampaignStep(campaign_id=campaign.id, position=0, body="hi")
    # The run's unique key is moving from occurrence_at to occurrence_key: whichever the model has.
    key = {"occurrence_key": now.isoformat()} if hasattr(CampaignRun, "occurrence_key") else {}
    run = CampaignRun(campaign_id=campaign.id, occurrence_at=now, status="sending", **key)
    session.add_all([step, run])
    session.flush()
    session.execute(
        text(MESSAGES_SQL),
        {
            "n": messages,
            "first": first,
            "now": now,
            "campaign_id": campaign.id,
            "run_id": run.id,
            "step_id": step.id,
        },
    )
    counters.apply(session, [(campaign.id, run.id, step.id, {"targeted": messages, "submitted": messages})])
    side = Side(kind, campaign.id, first, messages, [(first + index, status) for index, status in plan])
    for sid, message_id, contact_id in session.execute(
        select(Message.provider_sid, Message.id, Message.contact_id).where(Message.campaign_id == campaign.id)
    ):
        side.ids[int(sid[2:])] = message_id
        side.contacts[int(sid[2:])] = contact_id
    if kind == RULES:
        for name, condition, actions in rule_specs(segment_id):
            made = crud.create_rule(
                session, campaign.id, {"name": name, "condition": condition, "actions": actions}
            )
            side.rules[name] = made.id
    session.commit()
    return side


# --- One measured run ----------------------------------------------------------------------


@dataclass
class Measured:
    side: Side
    seconds: float  # from the drain's enqueue to the last job done
    stream_empty_s: float  # from the drain's enqueue to the last callback applied
    jobs: int  # RQ jobs run: drains and rules evaluations
    cpu: dict[str, float]  # CPU seconds used in the window, by family
    firings: dict[str, int] = field(default_factory=dict)  # rule name: firings

    @property
    def callbacks(self) -> int:
        return len(self.side.plan)

    @property
    def rate(self) -> float:
        return self.callbacks / self.seconds


def load(redis: Redis, app: Flask, side: Side, via_webhook: int) -> None:
    """Put the side's callbacks in the status inbox as the webhook does, with the kick flag
    held so that no drain starts."""
    redis.set(KICK, 1, ex=3600)
    settings = app.extensions["chatman.settings"]
    hooked = side.plan[len(side.plan) - min(via_webhook, len(side.plan)) :]
    direct = side.plan[: len(side.plan) - len(hooked)]
    for index, status in direct:
        form, message_id = callback_form(index, status), str(side.ids[index])
        parse_status(form, message_id)  # what the handler checks before appending
        if inbox.append(redis, inbox.STATUS, form, message_id=message_id):
            raise BenchError("the kick flag went away while loading: a drain may have started")
    validator = RequestValidator(settings.webhook_auth_token)
    with app.test_client() as client:
        for index, status in hooked:
            form, url = callback_form(index, status), f"{PATH}?m={side.ids[index]}"
            signature = validator.compute_signature(settings.public_base_url + url, form)
            answer = client.post(url, data=form, headers={"X-Twilio-Signature": signature})
            if answer.status_code != 204:
                raise BenchError(
                    f"the status webhook answered {answer.status_code}: {answer.get_data()[:200]}"
                )
    if (waiting := inbox.backlog(redis, inbox.STATUS)) != len(side.plan):
        raise BenchError(f"{waiting:,} callbacks in the inbox, {len(side.plan):,} loaded")


@dataclass
class Workers:
    procs: Processes
    started: list[subprocess.Popen]
    redis: Redis

    def sessions(self) -> dict[str, int]:
        return {f"worker-{i}": p.pid for i, p in enumerate(self.started)}

    def log_tail(self) -> str:
        return "\n".join(
            f"--- {name}\n" + "\n".join(line[:300] for line in self.procs.log_tail(name, 15).splitlines())
            for name in self.procs.started
        )

    def check(self) -> None:
        for w in self.started:
            if w.poll() is not None:
                raise BenchError(f"worker {w.pid} exited with {w.returncode}\n{self.log_tail()}")
        if jobs.worker_count(self.redis) > len(self.started):
            raise BenchError(f"a worker that is not ours is registered on {REDIS_URL}")
        for q in all_queues(self.redis):
            if failed := q.failed_job_registry.count:
                example = q.failed_job_registry.get_job_ids()[0]
                raise BenchError(f"{failed} RQ job(s) failed, e.g. {example}\n{self.log_tail()}")


def all_queues(redis: Redis) -> list:
    return [queues.queue(redis, name) for name in queues.QUEUES]


def cpu(workers: Workers) -> dict[str, float]:
    sessions = workers.sessions()
    used = cpu_snapshot(sessions)
    return {"workers": sum(used.pop(name) for name in sessions), "bench": time.process_time()} | used


def measure(db: Database, redis: Redis, app: Flask, workers: Workers, side: Side, args) -> Measured:
    loading = time.perf_counter()
    load(redis, app, side, args.via_webhook)
    print(f"loaded {len(side.plan):,} callbacks in {time.perf_counter() - loading:.1f} s", file=sys.stderr)
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))  # no autovacuum here: clear the last run's dead rows
    every = all_queues(redis)
    registries = [StartedJobRegistry(queue=q) for q in every] + [ScheduledJobRegistry(queue=q) for q in every]
    jobs_before, cpu_before = worker_job_counts(redis), cpu(workers)
    start = time.perf_counter()
    jobs.enqueue_status_drain(redis, app.extensions["chatman.settings"])
    stream_empty = quiet_since = None
    checked = start
    while True:
        now = time.perf_counter()
        backlog = inbox.backlog(redis, inbox.STATUS)
        if not backlog and stream_empty is None:
            stream_empty = now
        busy = (
            backlog or any(q.count for q in every) or any(r.get_job_count(cleanup=False) for r in registries)
        )
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= QUIET_S:
            break
        if now - start > args.timeout:
            raise BenchError(
                f"not done after {args.timeout:.0f} s, {backlog:,} callbacks left\n{workers.log_tail()}"
            )
        if now - checked > 0.5:  # dead workers, failed jobs: a few more round trips, now and then
            workers.check()
            checked = now
        time.sleep(POLL_S)
    used = {k: v - cpu_before[k] for k, v in cpu(workers).items()}
    workers.check()
    ran = worker_job_counts(redis)[0] - jobs_before[0]
    return Measured(side, quiet_since - start, stream_empty - start, ran, used)


# --- Checks ----------------------------------------------------------------------------------


def verify(session: Session, redis: Redis, measured: Measured, segment_id: int) -> list[str]:
    """What went wrong in this run (nothing, one hopes); fills in measured.firings."""
    side = measured.side
    problems = []
    if aside := inbox.set_aside_count(redis, inbox.STATUS):
        problems.append(f"{aside:,} callbacks set aside")
    pairs = {(f"SM{index:032d}", status) for index, status in side.plan}
    stored = session.execute(
        select(MessageEvent.provider_sid, MessageEvent.status, MessageEvent.applied)
        .join(Message, Message.provider_sid == MessageEvent.provider_sid)
        .where(Message.campaign_id == side.campaign_id)
    ).all()
    if lost := len(pairs - {(sid, status) for sid, status, _ in stored}):
        problems.append(f"{lost:,} (sid, status) pairs not in message_events")
    if unapplied := sum(1 for *_, applied in stored if not applied):
        problems.append(f"{unapplied:,} events unapplied")
    now_in = {
        int(sid[2:]): status
        for sid, status in session.execute(
            select(Message.provider_sid, Message.status).where(Message.campaign_id == side.campaign_id)
        )
    }
    finals = side.finals()
    want = {index: finals.get(index, states.SUBMITTED) for index in now_in}
    if wrong := sum(1 for index, status in now_in.items() if want[index] != status):
        problems.append(f"{wrong:,} messages not in the state their callbacks rank highest")
    if differences := counters.differences(session, side.campaign_id):
        problems.append(f"{len(differences)} counters differ from a recount, e.g. {differences[:3]}")

    fired: dict[int, set[int]] = {}
    not_done = 0
    for rule_id, message_id, status in session.execute(
        select(RuleFiring.rule_id, RuleFiring.message_id, RuleFiring.status)
        .join(Rule, Rule.id == RuleFiring.rule_id)
        .where(Rule.campaign_id == side.campaign_id)
    ):
        fired.setdefault(rule_id, set()).add(message_id)
        not_done += status != "done"
    if not_done:
        problems.append(f"{not_done:,} firings with a failed action")
    contact_ids = list(side.contacts.values())
    attributes = {
        cid: attrs
        for start in range(0, len(contact_ids), 10_000)
        for cid, attrs in session.execute(
            select(Contact.id, Contact.attributes).where(Contact.id.in_(contact_ids[start : start + 10_000]))
        )
    }
    members = {
        cid
        for start in range(0, len(contact_ids), 10_000)
        for cid in session.scalars(
            select(SegmentMember.contact_id).where(
                SegmentMember.segment_id == segment_id,
                SegmentMember.contact_id.in_(contact_ids[start : start + 10_000]),
            )
        )
    }
    if side.kind == NO_RULES:
        if fired:
            problems.append(f"{sum(map(len, fired.values())):,} firings for a campaign without rules")
        if changed := sum(1 for attrs in attributes.values() if attrs) + len(members):
            problems.append(f"{changed:,} contacts changed by no rule")
        return problems
    for name, rule_id in side.rules.items():
        expected = {side.ids[i] for i, state in finals.items() if state in MEETS[name]}
        got = fired.get(rule_id, set())
        measured.firings[name] = len(got)
        if got != expected:
            problems.append(
                f"rule {name!r}: fired for {len(got):,} messages, {len(expected):,} met it "
                f"({len(expected - got):,} missed, {len(got - expected):,} that did not)"
            )
        contacts = {side.contacts[i] for i, state in finals.items() if state in MEETS[name]}
        if name.startswith("delivered"):
            warm = {cid for cid, attrs in attributes.items() if attrs.get("tier") == "warm"}
            if warm != contacts:
                problems.append(f"tier=warm on {len(warm):,} contacts, {len(contacts):,} expected")
        elif name.startswith("read"):
            scores = {cid: attrs.get("score") for cid, attrs in attributes.items() if "score" in attrs}
            if set(scores) != contacts or any(v != 1 for v in scores.values()):
                twice = sum(1 for v in scores.values() if v != 1)
                problems.append(
                    f"score on {len(scores):,} contacts ({twice:,} not 1), {len(contacts):,} expected"
                )
        elif members != contacts:
            problems.append(f"{len(members):,} contacts added to the segment, {len(contacts):,} expected")
    return problems


# --- Main ------------------------------------------------------------------------------------


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the clean-up, as Ctrl-C does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="status callbacks per side and run")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternated")
    parser.add_argument("--workers", type=int, default=1, help="`flask worker` processes (Procfile: 1)")
    parser.add_argument("--via-webhook", type=int, default=1000, help="callbacks a run posts to the handler")
    parser.add_argument("--warmup", type=int, default=2000, help="callbacks of the untimed first run")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one run may take")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_exit)  # so that `finally` stops every process we started
    signal.signal(signal.SIGINT, signal.default_int_handler)

    redis = Redis.from_url(REDIS_URL)
    check_alone(redis, PG_URL)
    redis.flushdb()  # no jobs, workers or stream left by an earlier, interrupted run
    app = fresh_app(PG_URL)
    db: Database = app.extensions["chatman.db"]

    # A B, B A, A B, ...: each side as often first as second, against drift on a shared machine.
    order = [
        kind for r in range(args.repeat) for kind in ((NO_RULES, RULES) if r % 2 == 0 else (RULES, NO_RULES))
    ]
    started = time.perf_counter()
    with db.sessionmaker() as session:
        define_attribute(session, "tier", "string")
        define_attribute(session, "score", "number")
        segment = segments.create_segment(session, {"name": "engaged or failed", "kind": "static"})
        session.commit()
        segment_id = segment.id
        first = 0
        warmup = (
            build_side(session, RULES, first, args.warmup, args.seed + 1000, segment_id)
            if args.warmup
            else None
        )
        first += warmup.messages if warmup else 0
        sides = []
        for i, kind in enumerate(order):
            # Both sides of a round get the same story (seed), on messages of their own.
            sides.append(build_side(session, kind, first, args.messages, args.seed + i // 2, segment_id))
            first += sides[-1].messages
        session.execute(text("ANALYZE"))  # fresh tables: give the planner real sizes
        session.commit()
    built_s = time.perf_counter() - started
    print(f"built {first:,} submitted messages in {built_s:.1f} s", file=sys.stderr)

    env = os.environ | {
        "DATABASE_URL": normalise_database_url(PG_URL),
        "REDIS_URL": REDIS_URL,
        "SECRET_KEY": SECRET_KEY,
        "PUBLIC_BASE_URL": app.extensions["chatman.settings"].public_base_url,
        "TWILIO_ACCOUNT_SID": "",
        "TWILIO_AUTH_TOKEN": "",
        "TWILIO_WHATSAPP_FROM": "",
        "TWILIO_MESSAGING_SERVICE_SID": "",
        "SIMULATOR_CALLBACKS": "false",
        "TRUST_PROXY_HEADERS": "false",
    }
    runs: list[Measured] = []
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-rules-") as tmp:
        procs = Processes(Path(tmp), env)
        workers = Workers(procs, [], redis)
        try:
            started_workers = [
                procs.start(f"worker-{i + 1}", [sys.executable, "-m", "flask", "--app", "app", "worker"])
                for i in range(args.workers)
            ]
            workers.started = started_workers
            deadline = time.monotonic() + 60
            while jobs.worker_count(redis) < args.workers:
                workers.check()
                if time.monotonic() > deadline:
                    raise BenchError(f"the workers did not register in 60 s\n{workers.log_tail()}")
                time.sleep(0.2)
            for side in [*([warmup] if warmup else []), *sides]:
                measured = measure(db, redis, app, workers, side, args)
                with db.sessionmaker() as session:
                    found = verify(session, redis, measured, segment_id)
                label = "warm-up" if side is warmup else f"run {len(runs) + 1}"
                problems += [f"{label} ({side.kind}): {p}" for p in found]
                print(
                    f"{label}, {side.kind}: {measured.callbacks:,} callbacks in {measured.seconds:.2f} s, "
                    f"{measured.rate:,.0f}/s, {measured.jobs} jobs{'; ' + '; '.join(found) if found else ''}",
                    file=sys.stderr,
                )
                if side is not warmup:
                    runs.append(measured)
        except BaseException:
            if procs.started:  # the workers' last words
                print(f"--- worker logs ---\n{workers.log_tail()}", file=sys.stderr)
            raise
        finally:
            procs.stop_all()
    db.dispose()
    report(runs, problems, args, first, built_s)


def report(runs: list[Measured], problems: list[str], args, built: int, built_s: float) -> None:
    by_side = {kind: [m for m in runs if m.side.kind == kind] for kind in (NO_RULES, RULES)}
    rates = {kind: median([m.rate for m in ms]) for kind, ms in by_side.items()}
    sample = by_side[RULES][0].side
    print(
        f"Status callbacks applied by {args.workers} `flask worker` process(es) (jobs.apply_status_events, "
        f"then jobs.evaluate_rules), from a full status inbox; {args.messages:,} callbacks per run "
        f"(~{sample.messages:,} submitted messages: sent, delivered, read, some undelivered, ~10% twice, "
        f"shuffled; the last {min(args.via_webhook, args.messages):,} through the signed webhook); "
        f"sides alternated, median of {args.repeat}; {built:,} messages (all runs and the warm-up) "
        f"built in {built_s:.1f} s"
    )
    rows = []
    for kind, ms in by_side.items():
        rows.append(
            [
                kind,
                f"{ms[0].callbacks:,}",
                f"{median([m.seconds for m in ms]):.2f}",
                f"{median([m.stream_empty_s for m in ms]):.2f}",
                f"{min(m.rate for m in ms):,.0f}",
                f"{rates[kind]:,.0f}",
                f"{median([m.jobs for m in ms]):.0f}",
                f"{median([1000 * m.cpu['workers'] / m.callbacks for m in ms]):.2f}",
                f"{median([1000 * m.cpu['postgres'] / m.callbacks for m in ms]):.2f}",
                f"{median([m.cpu['machine'] / (m.seconds * os.cpu_count()) for m in ms]):.0%}",
                f"{rates[kind] / rates[NO_RULES]:.2f}x",
            ]
        )
    print(
        table(
            ["campaign", "callbacks", "seconds", "inbox empty at s", "events/s min", "events/s median",
             "jobs run", "worker CPU ms/event", "PostgreSQL CPU ms/event", "machine busy", "vs no rules"],
            rows,
        )
    )  # fmt: skip
    print()
    finals = [m.side.finals() for m in by_side[RULES]]
    firing_rows = []
    for name, condition, actions in rule_specs(0):
        met = [sum(1 for state in f.values() if state in MEETS[name]) for f in finals]
        action = ", ".join(
            f"{a['type']} {a.get('attribute', '')}{'=' + str(a['value']) if 'value' in a else ''}"
            f"{' by ' + str(a['by']) if 'by' in a else ''}".strip()
            for a in actions
        )
        firing_rows.append(
            [
                name,
                str(condition).replace("'", '"'),
                action.replace("add_to_segment", "add_to_segment (static)"),
                ", ".join(f"{n:,}" for n in met),
                ", ".join(f"{m.firings.get(name, 0):,}" for m in by_side[RULES]),
            ]
        )
    print(table(["rule", "condition", "action", "messages that met it, each run", "firings, each run"],
                firing_rows))  # fmt: skip
    print(
        "runs, events/s: "
        + "; ".join(f"{kind} {', '.join(f'{m.rate:,.0f}' for m in ms)}" for kind, ms in by_side.items())
        + "; rule firings/s: "
        + ", ".join(f"{sum(m.firings.values()) / m.seconds:,.0f}" for m in by_side[RULES])
    )
    print(
        "checks, every run: every (sid, status) pair kept and applied, each message in the state its "
        "callbacks rank highest, counters = recount, nothing set aside, no job failed; rules fired "
        "for exactly the messages that met them, contacts changed to match; none without rules: "
        + ("all passed" if not problems else f"{len(problems)} FAILED")
    )
    for problem in problems:
        print(f"  FAILED {problem}")
    print(f"rule_events_per_s: {rates[RULES]:.0f}")
    print(f"no_rule_events_per_s: {rates[NO_RULES]:.0f}")
    print(f"rule_to_no_rule_ratio: {rates[RULES] / rates[NO_RULES]:.2f}")
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
