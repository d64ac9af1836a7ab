"""Deliveries reach a CRM that verifies them (tests/outgoing/crm_stub.py), are retried on the
Standard Webhooks schedule under the one webhook-id they were queued with, and stop where the
spec says: a 2xx, a 410 (which disables the endpoint), another 4xx, or the tenth failure."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from chatman import jobs
from chatman.clock import tick
from chatman.outgoing import EndpointUnavailable, endpoints, queue_delivery
from chatman.outgoing.deliveries import claim, record
from chatman.outgoing.transport import ANSWERED, Answer
from chatman.timeutils import pinned, utcnow
from tests.outgoing.conftest import PAYLOAD, T0, delivery
from tests.outgoing.crm_stub import Sleep

SECOND = timedelta(seconds=1)
# Standard Webhooks' example: after the first attempt, each wait before the next one.
SCHEDULE = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
    timedelta(hours=24),
]


def test_an_endpoint_failing_twice_then_answering_gets_one_delivery_under_one_webhook_id(
    session, crm, senders, endpoint_for, queue, first_attempt, drive
):
    endpoint = endpoint_for()
    delivery_id = queue(endpoint)
    crm.answer(500, 500, 200)

    first_attempt([delivery_id], T0)
    assert [r.answered for r in crm.received] == [500]
    assert delivery(session, delivery_id).next_attempt_at == T0 + timedelta(seconds=5)
    # Not before its time: the retry waits its 5 s, then 5 min after the second attempt.
    assert drive(T0 + 4 * SECOND) == 0
    assert drive(T0 + timedelta(seconds=5)) == 1
    second = T0 + timedelta(seconds=5)
    assert drive(second + timedelta(minutes=5) - SECOND) == 0
    assert len(crm.received) == 2
    assert drive(second + timedelta(minutes=5)) == 1

    settled = delivery(session, delivery_id)
    assert [r.answered for r in crm.received] == [500, 500, 200]
    assert all(r.verified for r in crm.received), [r.why for r in crm.received]
    assert {r.webhook_id for r in crm.received} == {settled.webhook_id}
    assert settled.webhook_id.startswith("msg_")
    assert len({r.body for r in crm.received}) == 1  # the same bytes every time
    assert {r.content_type for r in crm.received} == {"application/json"}
    body = json.loads(crm.received[0].body)
    assert body == {"type": "rule.fired", "timestamp": T0.isoformat(), "data": PAYLOAD}
    assert sum(1 for r in crm.received if 200 <= r.answered < 300) == 1
    assert (settled.status, settled.attempt_count) == ("delivered", 3)
    assert settled.delivered_at == second + timedelta(minutes=5) and settled.next_attempt_at is None
    assert [(a.attempt, a.status_code) for a in settled.attempts] == [(1, 500), (2, 500), (3, 200)]
    assert [a.attempted_at for a in settled.attempts] == [T0, second, second + timedelta(minutes=5)]
    assert all(isinstance(a.duration_ms, int) and 0 <= a.duration_ms < 5000 for a in settled.attempts)
    assert settled.attempts[0].error.startswith("HTTP 500")
    # Delivered is final: nothing is due any more, whenever the clock looks.
    assert drive(T0 + timedelta(days=5)) == 0
    assert len(crm.received) == 3


def test_retries_reach_the_crm_through_a_real_worker_process(
    app, session, redis, crm, endpoint_for, queue, run_worker
):
    """The same, with `flask worker` processes doing the sending (their clock is the real one;
    the tick tells them when it is)."""
    from chatman.clock import deliver_due_webhooks

    endpoint = endpoint_for()
    start = utcnow()
    delivery_id = queue(endpoint, at=start)
    crm.answer(503, 200)
    env = {"WEBHOOK_ALLOW_PRIVATE": "true"}

    assert jobs.enqueue_webhook_deliveries(redis, [delivery_id]) == 1
    run_worker(**env)
    assert [r.answered for r in crm.received] == [503]
    retry_at = delivery(session, delivery_id).next_attempt_at
    assert timedelta(seconds=5) <= retry_at - start < timedelta(seconds=60)

    task = deliver_due_webhooks(app.extensions["chatman.db"], redis)
    with pinned(retry_at):
        assert tick(redis, [task], retry_at) == 1
    run_worker(**env)

    settled = delivery(session, delivery_id)
    assert [r.answered for r in crm.received] == [503, 200]
    assert all(r.verified for r in crm.received), [r.why for r in crm.received]
    assert {r.webhook_id for r in crm.received} == {settled.webhook_id}
    assert (settled.status, [a.status_code for a in settled.attempts]) == ("delivered", [503, 200])


def test_410_gone_disables_the_endpoint_fails_its_pending_deliveries_and_refuses_new_ones(
    session, crm, senders, endpoint_for, queue, first_attempt, drive
):
    endpoint = endpoint_for()
    other = endpoint_for(name="Other CRM")  # same stub, its own endpoint: untouched
    gone, waiting = queue(endpoint), queue(endpoint)
    elsewhere = queue(other)
    crm.secret = endpoint.secret
    crm.answer(410)

    first_attempt([gone], T0)

    assert len(crm.received) == 1
    session.expire_all()
    endpoint = endpoints.get_endpoint(session, endpoint.id)
    assert endpoint.enabled is False
    assert "410" in endpoint.disabled_reason and endpoint.disabled_at == T0
    assert delivery(session, gone).status == "failed"
    assert delivery(session, gone).attempts[0].status_code == 410
    left = delivery(session, waiting)
    assert left.status == "failed" and "disabled" in left.reason and left.attempt_count == 0
    assert delivery(session, elsewhere).status == "pending"
    with pytest.raises(EndpointUnavailable, match="disabled.*410"):
        queue_delivery(session, endpoint.id, "rule.fired", PAYLOAD, now=T0)
    session.rollback()
    with pytest.raises(EndpointUnavailable, match="does not exist"):
        queue_delivery(session, 999_999, "rule.fired", PAYLOAD, now=T0)
    session.rollback()

    # Only the other endpoint's delivery is still sent.
    crm.secret = other.secret
    assert drive(T0 + SECOND) == 1
    assert len(crm.received) == 2 and delivery(session, elsewhere).status == "delivered"
    assert drive(T0 + timedelta(days=4)) == 0


def test_a_crm_that_answers_too_slowly_is_tried_again(
    session, crm, senders, endpoint_for, queue, first_attempt, drive
):
    senders(WEBHOOK_TIMEOUT_S="0.5")
    endpoint = endpoint_for()
    delivery_id = queue(endpoint)
    crm.answer(Sleep(2.0, then=200), 200)

    first_attempt([delivery_id], T0)
    slow = delivery(session, delivery_id)
    (attempt,) = slow.attempts
    assert attempt.status_code is None and "no answer within 0.5 s" in attempt.error
    assert 500 <= attempt.duration_ms < 2000
    assert slow.status == "pending" and slow.next_attempt_at == T0 + timedelta(seconds=5)

    assert drive(T0 + timedelta(seconds=5)) == 1
    settled = delivery(session, delivery_id)
    assert settled.status == "delivered"
    assert [a.status_code for a in settled.attempts] == [None, 200]
    assert len({r.webhook_id for r in crm.received}) == 1


@pytest.mark.parametrize("code", [400, 404, 301])
def test_a_refusal_other_than_410_or_429_is_not_retried(
    session, crm, senders, endpoint_for, queue, first_attempt, drive, code
):
    endpoint = endpoint_for()
    delivery_id = queue(endpoint)
    crm.answer(code)

    first_attempt([delivery_id], T0)

    refused = delivery(session, delivery_id)
    assert refused.status == "failed" and refused.reason.startswith(f"not retried: HTTP {code}")
    assert refused.next_attempt_at is None
    assert endpoints.get_endpoint(session, endpoint.id).enabled is True  # only 410 disables
    assert drive(T0 + timedelta(days=4)) == 0
    assert len(crm.received) == 1


def test_429_is_retried(session, crm, senders, endpoint_for, queue, first_attempt, drive):
    endpoint = endpoint_for()
    delivery_id = queue(endpoint)
    crm.answer(429)
    first_attempt([delivery_id], T0)
    assert delivery(session, delivery_id).status == "pending"
    assert drive(T0 + timedelta(seconds=5)) == 1
    assert delivery(session, delivery_id).status == "delivered"


def test_the_tenth_failure_gives_up_and_nothing_more_is_sent(
    session, crm, senders, endpoint_for, queue, first_attempt, drive
):
    endpoint = endpoint_for()
    delivery_id = queue(endpoint)
    crm.answer(*[500] * 20)

    first_attempt([delivery_id], T0)
    at = T0
    for n, wait in enumerate(SCHEDULE, start=2):
        at += wait
        assert drive(at - SECOND) == 0, f"attempt {n} ran early"
        assert drive(at) == 1
        assert len(crm.received) == n

    assert at - T0 == timedelta(hours=75, minutes=35, seconds=5)  # about three days
    failed = delivery(session, delivery_id)
    assert (failed.status, failed.attempt_count, failed.next_attempt_at) == ("failed", 10, None)
    assert failed.reason.startswith("gave up after 10 attempts") and "HTTP 500" in failed.reason
    assert len(failed.attempts) == 10
    assert len({r.webhook_id for r in crm.received}) == 1 and all(r.verified for r in crm.received)
    for later in (at + SECOND, at + timedelta(days=1), at + timedelta(days=30)):
        assert drive(later) == 0
    assert len(crm.received) == 10


def test_a_claimed_delivery_is_not_sent_twice_until_its_claim_runs_out(session, endpoint_for, queue):
    delivery_id = queue(endpoint_for())
    hold = timedelta(seconds=60)

    assert claim(session, [delivery_id], T0, hold) == {delivery_id: 1}
    assert claim(session, [delivery_id], T0 + SECOND, hold) == {}  # another worker holds it
    # Its worker died: once the claim runs out, another takes it (the next attempt).
    assert claim(session, [delivery_id], T0 + hold, hold) == {delivery_id: 2}
    # The first worker's late failure does not undo what the newer attempt will decide.
    late = Answer(ANSWERED, 10, 500, "HTTP 500")
    record(session, delivery_id, 1, late, T0 + hold + SECOND)
    session.commit()
    row = delivery(session, delivery_id)
    assert (row.status, row.attempt_count, row.next_attempt_at) == ("pending", 2, T0 + 2 * hold)
    assert [a.attempt for a in row.attempts] == [1]  # kept, as it happened


def test_a_delivery_rolled_back_with_its_transaction_is_never_sent(session, endpoint_for, drive, crm):
    endpoint = endpoint_for()
    queue_delivery(session, endpoint.id, "rule.fired", PAYLOAD, now=T0)
    session.rollback()
    assert drive(T0 + SECOND) == 0 and crm.received == []


@pytest.mark.parametrize(
    ("event_type", "payload", "field"),
    [
        ("Rule Fired", PAYLOAD, "event_type"),
        ("rule.fired", ["not", "an", "object"], "payload"),
        ("rule.fired", {"when": T0}, "payload"),
        ("rule.fired", {"x": float("nan")}, "payload"),
    ],
)
def test_queueing_refuses_what_cannot_be_sent(session, endpoint_for, event_type, payload, field):
    from chatman.errors import Invalid

    endpoint = endpoint_for()
    with pytest.raises(Invalid) as error:
        queue_delivery(session, endpoint.id, event_type, payload, now=T0)
    assert field in error.value.errors
