"""Statuses arrive within seconds, whatever arrives: a steady flow of signed callbacks for
longer than the drain job's timeout, malformed ones among them, callbacks an older version
queued that cannot be applied, and a worker killed while it drains."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import requests
from sqlalchemy import select
from twilio.request_validator import RequestValidator

from chatman import inbox
from chatman.ledger import counters
from chatman.ledger.models import Message, MessageEvent
from tests.conftest import worker_env
from tests.factories import make_submitted_run
from tests.processes import start_clock, start_worker, wait_for
from tests.webhooks.test_twilio_status import params

DRAIN_TIMEOUT_S = 6  # the drain hands on every 2 s; RQ would kill one running past 6 s
FLOW_S = 40
KILL_AT_S = 12
RATE = 100  # callbacks per second
LAG_S = 5  # "within a few seconds of its arrival"
# After the kill: the dead worker is known dead within 6 s (its heartbeat), and what its drain
# had read is taken over once it sat unacknowledged for 15 s (inbox.STALE_MS).
RECOVERED_AFTER_S = 20
MALFORMED = [
    {"ErrorCode": "6" * 17},
    {"MessageStatus": "d" * 25},
    {"ErrorMessage": "nul\x00here"},
    {"MessageSid": "SM" + "7" * 63},
]


def poison(redis, i: int, sid: str) -> None:
    """What an older version accepted without checking: straight into the stream."""
    if i % 3 == 0:
        inbox.append(redis, inbox.STATUS, {"MessageSid": sid, "MessageStatus": "x" * 30})
    elif i % 3 == 1:
        redis.xadd(inbox.STATUS, {"data": b"\xffnot json at all"})
    else:  # what no database takes: a lone surrogate (the webhook now refuses it too)
        form = params(sid, "failed") | {"ErrorMessage": "Invalid \ud800 recipient"}
        redis.xadd(inbox.STATUS, {"data": json.dumps(form)})


def test_statuses_keep_flowing_past_the_drain_timeout_through_poison_and_a_killed_drain(
    app, client, session, redis, live_server
):
    campaign, _, _, messages = make_submitted_run(session, 1500)
    app.extensions["chatman.settings"] = replace(
        app.extensions["chatman.settings"], drain_timeout_s=DRAIN_TIMEOUT_S
    )
    env = worker_env(
        app, PUBLIC_BASE_URL=live_server, DRAIN_TIMEOUT_S=str(DRAIN_TIMEOUT_S), CLOCK_INTERVAL_S="1"
    )
    plan = [(m.provider_sid, status) for status in ("sent", "delivered", "read") for m in messages]
    url = live_server + "/webhooks/twilio/status"
    validator = RequestValidator(app.extensions["chatman.settings"].webhook_auth_token)
    http = requests.Session()

    def post(form: dict) -> int:
        signature = validator.compute_signature(url, form)
        return http.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=10).status_code

    worker, clock = start_worker(env), start_clock(env)
    posted, refused, poisoned = [], [], 0
    try:
        start = time.monotonic()
        killed_at = None
        for i, (sid, status) in enumerate(plan):
            elapsed = time.monotonic() - start
            if elapsed > FLOW_S:
                break
            if killed_at is None and elapsed > KILL_AT_S:
                worker.kill()  # while it drains: the flow never stops
                killed_at = time.time()
                worker = start_worker(env)
            if i % 40 == 39:
                refused.append(post(params(sid, "undelivered") | MALFORMED[i // 40 % len(MALFORMED)]))
            if i % 300 == 299:
                poison(redis, poisoned, messages[i % len(messages)].provider_sid)
                poisoned += 1
            assert post(params(sid, status)) == 204
            posted.append((sid, status))
            time.sleep(max(0.0, start + (i + 1) / RATE - time.monotonic()))

        def all_applied() -> bool:
            session.expire_all()
            done = session.execute(
                select(MessageEvent.provider_sid, MessageEvent.status).where(MessageEvent.applied.is_(True))
            ).all()
            return set(posted) <= set(done) and inbox.backlog(redis, inbox.STATUS) == 0

        wait_for(all_applied, 60, "every accepted callback applied", every=0.5)
    finally:
        logs = worker.stop() + clock.stop()

    assert killed_at is not None and len(posted) > RATE * FLOW_S * 0.8
    assert set(refused) == {400} and len(refused) >= 4 * len(MALFORMED)
    events = session.execute(select(MessageEvent)).scalars().all()
    assert {(e.provider_sid, e.status) for e in events} == set(posted)  # nothing malformed kept
    lags = [(e.received_at.timestamp(), (e.applied_at - e.received_at).total_seconds()) for e in events]
    before = [lag for at, lag in lags if at < killed_at - 1]
    after = [lag for at, lag in lags if at > killed_at + RECOVERED_AFTER_S]
    assert before and after, logs[-3000:]
    assert max(before) < LAG_S, (max(before), logs[-3000:])
    assert max(after) < LAG_S, (max(after), logs[-3000:])

    health = client.get("/healthz").json
    assert health["status_set_aside"] == poisoned >= 3
    assert (health["status_backlog"], health["status_oldest_s"]) == (0, None)
    listed = app.test_cli_runner().invoke(args=["statuses", "set-aside", "--limit", "100"])
    assert listed.exit_code == 0 and f"{poisoned} set aside in all" in listed.output
    reasons = [e["reason"] for e in inbox.set_aside_entries(redis, inbox.STATUS, 100)]
    assert sum("MessageStatus" in r for r in reasons) and sum("unreadable" in r for r in reasons) >= 2
    assert sum("surrogate" in r for r in reasons)
    finals = dict(session.execute(select(Message.provider_sid, Message.status)).all())
    read = {sid for sid, status in posted if status == "read"}
    assert all(finals[sid] == "read" for sid in read)
    assert "failed" not in finals.values()  # the poisoned "failed" callbacks were not applied
    assert counters.differences(session, campaign.id) == []
