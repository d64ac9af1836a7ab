"""Waiting conditions ("no reply within 24 h", "not read within N h"): counted from each
message's `sent`, found by the clock through their due-time rows when the time runs out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from chatman import jobs
from chatman.clock import evaluate_due_waits, tick
from chatman.rules.models import RuleWait
from chatman.timeutils import pinned
from tests.factories import define, inbound_form, make_submitted_run, signed_post
from tests.rules.test_rules import INBOUND, contact, firings, rule
from tests.webhooks.test_twilio_status import params, post

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def at(app, client, session, redis, in_process_jobs):
    """at(when, *callbacks): at `when` (the wall clock pinned there), post the signed status
    and inbound callbacks, tick the clock's rule-wait task, and run the jobs all this queued."""
    in_process_jobs()
    task = evaluate_due_waits(app.extensions["chatman.db"], redis)

    def run(when: datetime, *callbacks) -> None:
        with pinned(when):
            for callback in callbacks:
                callback()
            tick(redis, [task], when)
            jobs.run_worker(redis, burst=True)
        session.expire_all()

    return run


def status(client, app, message, value: str):
    return lambda: post(client, app, params(message.provider_sid, value))


def reply(client, app, session, message, text: str = "yes please"):
    phone = contact(session, message).phone
    form = inbound_form(phone, text, OriginalRepliedMessageSid=message.provider_sid)
    return lambda: signed_post(client, app, INBOUND, form)


def test_no_reply_within_24_hours_fires_for_those_who_did_not_reply_counted_from_each_sent(
    app, client, session, at
):
    define(session, tier="string")
    # All four were queued (submitted) at the same moment; their `sent` came at different times.
    campaign, _, _, messages = make_submitted_run(session, 4)
    answered, late, silent, sent_later = messages
    nudge = rule(
        session,
        campaign,
        "no reply: nudge",
        {"no_reply_within": 24},
        {"type": "set_attribute", "attribute": "tier", "value": "nudge"},
    )
    session.commit()

    at(T0, *(status(client, app, m, "sent") for m in (answered, late, silent)))
    at(T0 + timedelta(hours=6), status(client, app, sent_later, "sent"))
    # The clock knows when to look again: one due row per message, from its own `sent`.
    due = {w.message_id: w.due_at for w in session.scalars(select(RuleWait))}
    assert due == {
        answered.id: T0 + timedelta(hours=24),
        late.id: T0 + timedelta(hours=24),
        silent.id: T0 + timedelta(hours=24),
        sent_later.id: T0 + timedelta(hours=30),
    }
    at(T0 + timedelta(hours=2), reply(client, app, session, answered))
    at(T0 + timedelta(hours=23, minutes=59))
    assert firings(session, nudge) == []

    at(T0 + timedelta(hours=24, minutes=1))
    assert {f.contact_id for f in firings(session, nudge)} == {late.contact_id, silent.contact_id}
    # A reply after the 24 hours changes nothing: the rule already fired, once.
    at(T0 + timedelta(hours=25), reply(client, app, session, late))
    at(T0 + timedelta(hours=29, minutes=59))
    assert len(firings(session, nudge)) == 2

    at(T0 + timedelta(hours=30, minutes=1))
    assert {f.contact_id for f in firings(session, nudge)} == {
        late.contact_id,
        silent.contact_id,
        sent_later.contact_id,
    }
    assert contact(session, answered).attributes == {}
    assert contact(session, silent).attributes == {"tier": "nudge"}
    assert session.scalars(select(RuleWait)).all() == []  # evaluated: nothing left to look at
    at(T0 + timedelta(days=3))
    assert len(firings(session, nudge)) == 3


def test_read_but_not_replied_and_not_read_within(app, client, session, at):
    define(session, tier="string")
    campaign, _, _, messages = make_submitted_run(session, 3)
    reader, replier, unread = messages
    warm = rule(
        session,
        campaign,
        "read, no reply in 24 h: warm",
        {"all": [{"status": "read"}, {"no_reply_within": 24}]},
        {"type": "set_attribute", "attribute": "tier", "value": "warm"},
    )
    cold = rule(
        session,
        campaign,
        "not read in 48 h: cold",
        {"not_read_within": 48},
        {"type": "set_attribute", "attribute": "tier", "value": "cold"},
    )
    session.commit()
    at(T0, *(status(client, app, m, "sent") for m in messages))
    at(T0 + timedelta(hours=1), status(client, app, reader, "read"), status(client, app, replier, "read"))
    at(T0 + timedelta(hours=3), reply(client, app, session, replier))
    at(T0 + timedelta(hours=24, minutes=1))
    assert [f.contact_id for f in firings(session, warm)] == [reader.contact_id]
    assert firings(session, cold) == []
    at(T0 + timedelta(hours=48, minutes=1))
    assert [f.contact_id for f in firings(session, cold)] == [unread.contact_id]
    assert [contact(session, m).attributes.get("tier") for m in messages] == ["warm", None, "cold"]


def test_two_clocks_never_take_the_same_due_wait(app, session, redis):
    from chatman.rules.engine import claim_due_waits

    campaign, _, _, messages = make_submitted_run(session, 3)
    waiting = rule(session, campaign, "w", {"no_reply_within": 1}, {"type": "clear_dnd"})
    session.add_all(
        RuleWait(rule_id=waiting.id, message_id=m.id, due_at=T0 + timedelta(minutes=i))
        for i, m in enumerate(messages)
    )
    session.commit()
    db = app.extensions["chatman.db"]
    with db.sessionmaker() as one, db.sessionmaker() as other:
        first = claim_due_waits(one, T0 + timedelta(hours=1), 2)
        one.commit()
        second = claim_due_waits(other, T0 + timedelta(hours=1), 10)
        other.commit()
    assert [m for _, m in first] == [messages[0].id, messages[1].id]
    assert [m for _, m in second] == [messages[2].id]
    # A claim whose job died is taken again once it has run out.
    with db.sessionmaker() as again:
        assert claim_due_waits(again, T0 + timedelta(hours=1, minutes=5), 10) == []
        assert len(claim_due_waits(again, T0 + timedelta(hours=1, minutes=11), 10)) == 3
