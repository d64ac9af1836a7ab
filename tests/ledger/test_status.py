"""Status callbacks: kept once, applied forward only, counters equal to a recount."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, select

from chatman.ledger import counters
from chatman.ledger.models import Message, MessageEvent
from chatman.ledger.status import StatusUpdate, apply_pending_events, record
from tests.factories import make_submitted_run

RANK = {"submitted": 0, "sent": 1, "failed": 2, "delivered": 3, "read": 4}
LEDGER = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",
}
PATHS = [
    ["sent", "delivered", "read"],
    ["sent", "delivered"],
    ["sent"],
    ["failed"],
    ["sent", "undelivered"],
    ["queued", "sent", "delivered", "read"],
    ["sent", "failed", "delivered"],
    ["undelivered", "read"],
]


def expected_final(path: list[str]) -> str:
    final = "submitted"
    for status in path:
        state = LEDGER.get(status)
        if state and RANK[state] > RANK[final]:
            final = state
    return final


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(paths=st.lists(st.sampled_from(PATHS), min_size=12, max_size=12), seed=st.integers(0, 10**6))
def test_shuffled_duplicated_callbacks_end_at_the_furthest_status(session, paths, seed):
    campaign, run, step, messages = make_submitted_run(session, len(paths))
    events = [(m.provider_sid, status) for m, path in zip(messages, paths, strict=True) for status in path]
    events = events * 2
    random.Random(seed).shuffle(events)
    outcomes = [
        record(
            session,
            StatusUpdate(sid, status, error_code="30008" if status in ("failed", "undelivered") else None),
        )
        for sid, status in events
    ]
    session.commit()
    assert outcomes.count("duplicate") == len(events) // 2
    finals = dict(session.execute(select(Message.provider_sid, Message.status)).all())
    for message, path in zip(messages, paths, strict=True):
        assert finals[message.provider_sid] == expected_final(path), path
    assert counters.differences(session, campaign.id) == []
    stored = counters.stored(session, campaign.id)
    key = (campaign.id, run.id, step.id)
    assert stored.get((*key, "read"), 0) == sum(expected_final(p) == "read" for p in paths)
    assert stored.get((*key, "failed:30008"), 0) == sum(expected_final(p) == "failed" for p in paths)
    # clean for the next example
    session.execute(delete(MessageEvent))
    session.execute(delete(Message))
    session.commit()


def test_callback_for_an_unknown_sid_is_kept_and_applied_when_the_sid_appears(session):
    campaign, run, step, messages = make_submitted_run(session, 1)
    message = messages[0]
    assert record(session, StatusUpdate("SMlater", "delivered")) == "waiting"
    assert record(session, StatusUpdate("SMlater", "delivered")) == "duplicate"
    session.commit()
    assert session.scalar(select(func.count()).select_from(MessageEvent)) == 1
    message.provider_sid = "SMlater"
    session.flush()
    assert apply_pending_events(session, ["SMlater"]) == 1
    session.commit()
    session.refresh(message)
    assert message.status == "delivered"
    assert counters.differences(session, campaign.id) == []


def test_failure_keeps_the_error_code_and_a_later_read_clears_it(session):
    campaign, run, step, (message,) = make_submitted_run(session, 1)
    record(session, StatusUpdate(message.provider_sid, "undelivered", "63024", "not on WhatsApp"))
    session.commit()
    session.refresh(message)
    assert (message.status, message.error_code) == ("failed", "63024")
    record(session, StatusUpdate(message.provider_sid, "read"))
    session.commit()
    session.refresh(message)
    assert (message.status, message.error_code, message.read_at is not None) == ("read", None, True)
    assert counters.differences(session, campaign.id) == []


def test_callbacks_the_database_refuses_are_isolated_and_the_rest_applied(app, session):
    """The webhook refuses what no database keeps, but a callback queued by an older version
    (or a rule we did not foresee) may still be refused at the database: the batch is split
    down to it, and every other callback is applied."""
    from sqlalchemy.orm import sessionmaker

    from chatman.ledger.status import record_isolated

    _, _, _, messages = make_submitted_run(session, 6)
    events = [StatusUpdate(provider_sid=m.provider_sid, status="delivered") for m in messages]
    events[4] = StatusUpdate(provider_sid=messages[4].provider_sid, status="failed", error_message="x\ud800")
    refused = record_isolated(sessionmaker(app.extensions["chatman.db"].engine), events)
    assert [index for index, _ in refused] == [4]
    session.expire_all()
    statuses = dict(session.execute(select(Message.provider_sid, Message.status)).all())
    assert statuses.pop(messages[4].provider_sid) == "submitted"
    assert set(statuses.values()) == {"delivered"}
