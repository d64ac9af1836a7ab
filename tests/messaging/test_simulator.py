"""The simulator provider: sends recorded, then signed status callbacks through our webhook."""

from __future__ import annotations

import json
import random
import subprocess
import time
from datetime import UTC, datetime

from sqlalchemy import func, select

from chatman import inbox
from chatman.campaigns import lifecycle
from chatman.config import SimulatorSettings
from chatman.jobs import enqueue_dispatch
from chatman.ledger import counters
from chatman.ledger.models import Message, MessageEvent
from chatman.messaging.simulator import CALLBACKS_KEY, plan_callbacks
from chatman.messaging.templates import save_template
from chatman.queues import queue
from tests.conftest import ROOT, worker_command, worker_env
from tests.factories import make_audience


def test_plan_reaches_a_final_status_with_duplicates_and_disorder():
    network = SimulatorSettings(
        delay_s=1, failure_rate=0.2, read_rate=0.5, duplicate_rate=0.3, disorder_rate=0.3
    )
    rng = random.Random(3)
    finals, duplicated, overtaken = [], 0, 0
    for i in range(500):
        plan = plan_callbacks(f"SM{i}", "+919800000001", network, rng, now=1000.0)
        statuses = [form["MessageStatus"] for _, form in sorted(plan, key=lambda p: p[0])]
        assert all(due > 1000.0 for due, _ in plan)
        duplicated += len(statuses) != len(set(statuses))
        overtaken += statuses[0] != "sent"
        finals.append(
            "read" if "read" in statuses else "undelivered" if "undelivered" in statuses else "delivered"
        )
        failed = [form for _, form in plan if form["MessageStatus"] == "undelivered"]
        assert all(form["ErrorCode"] and form["ErrorMessage"] for form in failed)
    assert 60 < finals.count("undelivered") < 140  # ~20 %
    assert 150 < finals.count("read") < 250  # ~half of the delivered 80 %
    assert duplicated > 50 and overtaken > 50


def launch_hello(session, redis, contacts: int):
    """A utility broadcast to `contacts` new contacts, launched and its dispatch queued."""
    everyone, _ = make_audience(session, contacts)
    template = save_template(
        session,
        {
            "name": "hello",
            "language": "en",
            "category": "utility",
            "status": "approved",
            "body": "Hello {{first}}",
            "variables": {"first": {"field": "name"}},
        },
    )
    campaign = lifecycle.create_campaign(
        session, {"name": "Hello", "template_id": template.id, "include_segments": [everyone.id]}
    )
    run = lifecycle.launch(session, campaign.id)
    session.commit()
    enqueue_dispatch(redis, run.id)
    return campaign


def settle(session, redis, env: dict, messages: int, timeout_s: float) -> None:
    """Run a long-lived worker (as `bin/run` does) until every message has its final status
    and no simulated callback is left waiting."""
    worker = subprocess.Popen(
        worker_command(), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            session.expire_all()
            states = dict(
                session.execute(select(Message.status, func.count()).group_by(Message.status)).all()
            )
            unsettled = sum(states.get(s, 0) for s in ("pending", "claimed", "submitted"))
            waiting = redis.zcard(CALLBACKS_KEY) + inbox.backlog(redis, inbox.STATUS)
            if sum(states.values()) == messages and unsettled == 0 and waiting == 0:
                break
            time.sleep(0.2)
    finally:
        worker.terminate()
        _, errors = worker.communicate(timeout=30)
    assert sum(states.values()) == messages and unsettled == 0 and waiting == 0, (
        f"{states}, {waiting} callbacks waiting\n{errors.decode()[-3000:]}"
    )


def test_simulated_statuses_arrive_signed_through_the_webhook_and_are_applied(
    app, session, redis, live_server
):
    campaign = launch_hello(session, redis, contacts=120)
    env = worker_env(
        app,
        PUBLIC_BASE_URL=live_server,
        SIMULATOR_CALLBACKS="true",
        SIMULATOR_DELAY_S="0.05",
        SIMULATOR_FAILURE_RATE="0.2",
        SIMULATOR_READ_RATE="0.5",
        SIMULATOR_DUPLICATE_RATE="0.3",
        SIMULATOR_DISORDER_RATE="0.3",
    )
    settle(session, redis, env, messages=120, timeout_s=120)

    statuses = dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())
    assert set(statuses) <= {"delivered", "read", "failed", "skipped"}
    assert (
        statuses.get("failed", 0) > 5 and statuses.get("read", 0) > 20 and statuses.get("delivered", 0) > 20
    )
    failed = session.scalars(select(Message.error_code).where(Message.status == "failed")).all()
    assert all(code in ("63024", "63049", "30008") for code in failed)
    # every callback kept once, however often the network repeated it
    kept = session.execute(select(MessageEvent.provider_sid, MessageEvent.status)).all()
    assert len(kept) == len(set(kept)) and len(kept) >= 2 * (statuses["delivered"] + statuses["read"])
    assert counters.differences(session, campaign.id) == []


def test_a_simulated_customer_writes_and_reads_the_answer(
    app, client, auth, session, redis, live_server, run_worker
):
    from chatman.triggers.crud import save_trigger

    save_trigger(
        session,
        {
            "name": "hi",
            "match_type": "exact",
            "patterns": ["hi"],
            "action": "reply",
            "reply_body": "Hello {{name}}! How can we help?",
        },
    )
    session.commit()
    said = client.post(
        "/api/v1/simulator/messages",
        headers=auth,
        json={"phone": "+919822200000", "body": "Hi!", "profile_name": "Meera"},
    )
    assert said.status_code == 202 and said.json["webhook_status"] == 200  # through the signed webhook
    run_worker()
    chat = client.get("/api/v1/simulator/messages?phone=%2B919822200000", headers=auth).json["messages"]
    assert [(m["from"], m["text"]) for m in chat] == [
        ("customer", "Hi!"),
        ("business", "Hello Meera! How can we help?"),
    ]
    nothing = client.post("/api/v1/simulator/messages", headers=auth, json={"phone": "+919822200000"})
    assert nothing.status_code == 422


def test_with_the_default_delays_every_status_arrives(app, session, redis, live_server):
    """What `bin/run` does: callbacks a second apart, each round of posting scheduling the next
    (RQ schedules in whole seconds; a round that ran early once broke the chain)."""
    campaign = launch_hello(session, redis, contacts=20)
    env = worker_env(app, PUBLIC_BASE_URL=live_server, SIMULATOR_CALLBACKS="true", SIMULATOR_DELAY_S="1")
    settle(session, redis, env, messages=20, timeout_s=60)
    assert counters.differences(session, campaign.id) == []


def test_the_clock_posts_callbacks_a_broken_chain_left_behind(redis):
    """A worker killed mid-round leaves callbacks no job will post: the clock restarts the rounds
    once they are overdue, and leaves the chain alone while it keeps up."""
    from chatman.clock import SIMULATOR_OVERDUE, simulated_network, tick

    now = datetime.now(UTC)
    redis.zadd(CALLBACKS_KEY, {json.dumps({"url": "http://x", "form": {}}): now.timestamp() - 2})

    def rounds() -> list[str]:
        return [j for j in queue(redis, "system").job_ids if j.startswith("simulator-callbacks")]

    tick(redis, [simulated_network(redis)], now=now)
    assert rounds() == []  # due just now: the chain's job
    tick(redis, [simulated_network(redis)], now=now + SIMULATOR_OVERDUE)
    assert len(rounds()) == 1
    tick(redis, [simulated_network(redis)], now=now + 2 * SIMULATOR_OVERDUE)
    assert len(rounds()) == 1  # the round it started is still waiting: not a second one


def test_simulator_say_writes_as_the_customer_and_prints_the_answer(app, session, redis, live_server):
    from chatman.contacts.models import Contact
    from chatman.triggers.crud import save_trigger

    save_trigger(
        session,
        {
            "name": "hi",
            "match_type": "keyword",
            "patterns": ["hi"],
            "action": "reply",
            "reply_body": "Hello {{name}}!",
        },
    )
    session.commit()
    worker = subprocess.Popen(
        worker_command(),
        cwd=ROOT,
        env=worker_env(app, PUBLIC_BASE_URL=live_server),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        said = app.test_cli_runner().invoke(
            args=["simulator", "say", "+919822200001", "hi there", "--name", "Meera", "--wait", "10"]
        )
    finally:
        worker.terminate()
        worker.wait(30)
    assert said.exit_code == 0, said.output
    assert said.output.strip() == "business: Hello Meera!"
    assert session.scalar(select(Contact.name).where(Contact.phone == "+919822200001")) == "Meera"

    silent = app.test_cli_runner().invoke(args=["simulator", "say", "+919822200001"])
    assert silent.exit_code != 0 and "say something" in silent.output
