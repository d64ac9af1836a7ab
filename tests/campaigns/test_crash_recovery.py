"""A worker killed half-way through a broadcast: nothing is sent twice, nothing is forgotten,
and its rows move on within a minute and a half.

Real parts throughout: the Twilio adapter talks to a local stub of Twilio's API (which counts
what it received), a real `flask worker` process is killed with SIGKILL while requests are in
flight, and the clock and another worker carry on, as they would in production.
"""

from __future__ import annotations

import time
from datetime import timedelta

from sqlalchemy import func, select

from chatman.campaigns import lifecycle
from chatman.clock import recover_stale_sends, tick
from chatman.contacts.models import Contact
from chatman.jobs import enqueue_dispatch
from chatman.ledger import counters
from chatman.ledger.models import Message
from chatman.messaging.delivery import MAX_LOOKUPS
from chatman.messaging.templates import save_template
from chatman.timeutils import utcnow
from tests.conftest import twilio_env, worker_env
from tests.factories import make_audience
from tests.processes import start_clock, start_worker, wait_for

RECOVERED_WITHIN_S = 90


def launch(session, redis, contacts: int):
    everyone, _ = make_audience(session, contacts)
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
    return campaign


def kill_mid_send(env: dict, twilio_stub, hold_after: int) -> float:
    """Run a worker until Twilio has "accepted" `hold_after` messages and holds the answers
    to the next ones, then SIGKILL it with those requests in flight; returns when."""
    twilio_stub.config(hold_after=hold_after)
    worker = start_worker(env)
    try:
        wait_for(lambda: twilio_stub.messages()["held"] >= 8, 180, "requests held at the stub")
        time.sleep(0.3)  # let the rest of the in-flight group reach the stub
        assert worker.proc.poll() is None, "the worker is running the batch"
    finally:
        worker.kill()
    return time.monotonic()


def status_of(session, campaign_id: int) -> str:
    session.expire_all()
    return lifecycle.get_campaign(session, campaign_id).status


def ledger_states(session) -> dict[str, int]:
    session.expire_all()
    return dict(session.execute(select(Message.status, func.count()).group_by(Message.status)).all())


def test_a_killed_workers_rows_are_each_sent_once_within_90_s(app, session, redis, twilio_stub):
    campaign = launch(session, redis, 10_000)
    env = worker_env(app, **twilio_env(twilio_stub), CLOCK_INTERVAL_S="1")
    killed_at = kill_mid_send(env, twilio_stub, hold_after=4000)
    twilio_stub.release()

    states = ledger_states(session)
    claimed = set(session.scalars(select(Message.id).where(Message.status == "claimed")))
    handed = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(Message.status == "claimed", Message.handed_at.is_not(None))
    )
    assert handed > 0 and len(claimed) > handed, states  # some went out unanswered, some never left
    assert 4000 < twilio_stub.messages()["count"] < 9000

    clock, worker = start_clock(env), start_worker(env)
    try:

        def claimed_rows_sent() -> bool:
            session.expire_all()
            decided = session.scalar(
                select(func.count())
                .select_from(Message)
                .where(Message.id.in_(claimed), Message.status == "submitted")
            )
            return decided == len(claimed)

        wait_for(claimed_rows_sent, 180, "the dead worker's rows to be sent", every=0.5)
        recovered_in = time.monotonic() - killed_at
        wait_for(
            lambda: status_of(session, campaign.id) == "completed", 180, "the campaign to complete", every=0.5
        )
    finally:
        logs = worker.stop() + clock.stop()
    assert recovered_in < RECOVERED_WITHIN_S, (recovered_in, logs[-3000:])

    contacts = {c.phone: c for c in session.scalars(select(Contact))}
    eligible = {phone for phone, c in contacts.items() if not c.dnd}
    received = twilio_stub.messages()["by_to"]
    assert set(received) == eligible
    assert set(received.values()) == {1}  # exactly once each, the recovered ones included
    assert ledger_states(session) == {"submitted": len(eligible), "skipped": len(contacts) - len(eligible)}
    sids = set(session.scalars(select(Message.provider_sid).where(Message.provider_sid.is_not(None))))
    assert sids == {m["sid"] for m in twilio_stub.messages(full=True)["messages"]}
    verify = app.test_cli_runner().invoke(args=["reports", "verify"])
    assert verify.exit_code == 0, verify.output


def test_rows_whose_fate_the_provider_cannot_tell_end_unconfirmed_and_the_campaign_completes(
    app, session, redis, twilio_stub, run_worker
):
    campaign = launch(session, redis, 2000)
    env = worker_env(app, **twilio_env(twilio_stub))
    kill_mid_send(env, twilio_stub, hold_after=1000)
    twilio_stub.config(list_error={"status": 500, "code": 20500})  # and Twilio cannot be asked
    twilio_stub.release()
    handed = set(
        session.scalars(select(Message.id).where(Message.status == "claimed", Message.handed_at.is_not(None)))
    )
    assert handed

    # The clock over the next hour or so: each recovery asks Twilio again, backing off, until
    # it gives up on those rows; the rest of the broadcast goes on meanwhile.
    task = recover_stale_sends(app.extensions["chatman.db"], redis, 900)
    for round_ in range(1, MAX_LOOKUPS + 2):
        tick(redis, [task], now=utcnow() + timedelta(minutes=10 * round_))
        run_worker(**twilio_env(twilio_stub))

    states = ledger_states(session)
    assert set(session.scalars(select(Message.id).where(Message.status == "unconfirmed"))) == handed
    lookups = set(session.scalars(select(Message.lookups).where(Message.id.in_(handed))))
    assert lookups == {MAX_LOOKUPS}
    contacts = session.scalar(select(func.count()).select_from(Contact))
    eligible = session.scalar(select(func.count()).select_from(Contact).where(Contact.dnd.is_(False)))
    assert states == {
        "submitted": eligible - len(handed),
        "unconfirmed": len(handed),
        "skipped": contacts - eligible,
    }
    assert set(twilio_stub.messages()["by_to"].values()) == {1}  # none sent again
    assert lifecycle.get_campaign(session, campaign.id).status == "completed"
    totals = {}
    for (_, _, _, metric), value in counters.stored(session, campaign.id).items():
        totals[metric] = totals.get(metric, 0) + value
    assert (totals["unconfirmed"], totals["submitted"]) == (len(handed), eligible - len(handed))
    assert counters.differences(session, campaign.id) == []
