"""A worker killed half-way through a broadcast: nothing is sent twice, nothing is forgotten.

Real parts throughout: the Twilio adapter talks to a local stub of Twilio's API (which counts
what it received), a real `flask worker` process is killed with SIGKILL while requests are
in flight, the clock's recovery task runs as it would STALE_CLAIM_S later, and a new worker
finishes the job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from datetime import timedelta

from sqlalchemy import func, select

from chatman.campaigns import lifecycle
from chatman.clock import recover_stale_sends, tick
from chatman.contacts.models import Contact
from chatman.jobs import enqueue_dispatch
from chatman.ledger.models import Message
from chatman.messaging.templates import save_template
from chatman.timeutils import utcnow
from tests.conftest import ROOT, twilio_env, worker_command, worker_env
from tests.factories import make_audience

STALE_CLAIM_S = 900


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def test_worker_killed_mid_broadcast_leaves_each_contact_sent_exactly_once(
    app, session, redis, twilio_stub, run_worker
):
    everyone, _ = make_audience(session, 10_000)
    template = save_template(
        session,
        {
            "name": "order_update",
            "language": "en",
            "category": "utility",
            "status": "approved",
            "body": "Hi {{first}}, your order is on its way",
            "content_sid": "HX" + "a" * 32,
            "variables": {"first": {"field": "name"}},
        },
    )
    campaign = lifecycle.create_campaign(
        session, {"name": "Orders", "template_id": template.id, "include_segments": [everyone.id]}
    )
    run = lifecycle.launch(session, campaign.id)
    session.commit()
    enqueue_dispatch(redis, run.id)

    # After 4,000 messages Twilio "accepts" further ones but its answers never come back:
    # the worker is killed while those requests are in flight.
    twilio_stub.config(hold_after=4000)
    env = worker_env(app, **twilio_env(twilio_stub))
    with tempfile.TemporaryFile() as log:
        worker = subprocess.Popen(
            worker_command(), cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True
        )
        try:
            wait_for(lambda: twilio_stub.messages()["held"] >= 8, 180, "requests held at the stub")
            time.sleep(0.3)  # let the rest of the in-flight group reach the stub
            assert worker.poll() is None, "the worker is running the batch"
        finally:
            # The worker, which runs the batch itself, and its scheduler process, as a crash
            # of the machine would.
            for pid in [*children(worker.pid), worker.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            worker.wait()
    twilio_stub.release()

    session.expire_all()
    states = dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())
    handed_unanswered = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.status == "claimed", Message.handed_at.is_not(None))
    )
    at_stub = twilio_stub.messages()["count"]
    assert handed_unanswered > 0, states  # some rows went out and their answer was lost
    assert states.get("pending", 0) > 0, states  # and some were never tried
    assert 4000 < at_stub < 9000

    # The clock, STALE_CLAIM_S later: the dead batch's rows are settled by asking Twilio, the
    # run is dispatched again, and a new worker finishes it.
    db = app.extensions["chatman.db"]
    tick(
        redis,
        [recover_stale_sends(db, redis, STALE_CLAIM_S)],
        now=utcnow() + timedelta(seconds=STALE_CLAIM_S + 1),
    )
    run_worker(**twilio_env(twilio_stub))

    contacts = {c.phone: c for c in session.scalars(select(Contact))}
    eligible = {phone for phone, c in contacts.items() if not c.dnd}
    received = twilio_stub.messages()["by_to"]
    assert set(received) == eligible
    assert set(received.values()) == {1}  # exactly once each, the recovered ones included

    session.expire_all()
    states = dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())
    assert states == {"submitted": len(eligible), "skipped": len(contacts) - len(eligible)}
    sids = set(session.scalars(select(Message.provider_sid).where(Message.provider_sid.is_not(None))))
    assert sids == {m["sid"] for m in twilio_stub.messages(full=True)["messages"]}
    verify = app.test_cli_runner().invoke(args=["reports", "verify"])
    assert verify.exit_code == 0, verify.output
    assert lifecycle.get_campaign(session, campaign.id).status == "completed"
