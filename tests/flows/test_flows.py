"""A three-step conversation (ask name, ask city with buttons, confirm) through real webhooks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from chatman.clock import expire_flows, tick
from chatman.contacts.models import Contact
from chatman.errors import Invalid
from chatman.flows.crud import save_flow
from chatman.flows.models import FlowSession
from chatman.messaging.models import InboundMessage
from chatman.messaging.simulator import sent_to
from chatman.timeutils import utcnow
from chatman.triggers.crud import save_trigger
from tests.factories import define, inbound_form, signed_post

URL = "/webhooks/twilio/inbound"
PHONE = "+919820055555"
STEPS = [
    {
        "id": "name",
        "type": "ask",
        "text": "Welcome! What is your name?",
        "validate": "text",
        "save_to": "first_name",
        "next": "city",
    },
    {
        "id": "city",
        "type": "ask",
        "text": "Thanks {{first_name}}. Which city are you in?",
        "buttons": [
            {"id": "pune", "title": "Pune"},
            {"id": "mumbai", "title": "Mumbai"},
            {"id": "goa", "title": "Goa"},
        ],
        "validate": "choice",
        "save_to": "city",
        "invalid_text": "Sorry, we deliver only to these cities.",
        "next": {"goa": "beach", "*": "confirm"},
    },
    {"id": "confirm", "type": "message", "text": "All set, {{first_name}} from {{city}}!"},
    {"id": "beach", "type": "message", "text": "Goa! Our beach store is open daily, {{first_name}}."},
]


@pytest.fixture
def signup(session):
    flow = save_flow(
        session,
        {
            "name": "signup",
            "steps": STEPS,
            "timeout_s": 3600,
            "timeout_message": "Let's finish another time!",
        },
    )
    save_trigger(
        session,
        {
            "name": "join",
            "match_type": "keyword",
            "patterns": ["join", "register"],
            "action": "flow",
            "flow_id": flow.id,
        },
    )
    session.commit()
    return flow


def say(client, app, text=None, payload=None):
    form = inbound_form(
        PHONE, text or "", **({"ButtonPayload": payload, "ButtonText": text} if payload else {})
    )
    assert signed_post(client, app, URL, form).status_code == 200


def screen(redis):
    return [m["body"] for m in sent_to(redis, PHONE)]


def test_the_flow_fills_two_attributes_re_asks_a_bad_answer_and_confirms(
    app, client, session, redis, run_worker, signup
):
    say(client, app, "I want to register")
    say(client, app, "Asha")
    say(client, app, "Delhi")  # not one of the buttons
    say(client, app, "Pune", payload="pune")
    run_worker()
    question = "Thanks Asha. Which city are you in?\n1. Pune\n2. Mumbai\n3. Goa"
    assert screen(redis) == [
        "Welcome! What is your name?",
        question,
        "Sorry, we deliver only to these cities.\n" + question,
        "All set, Asha from Pune!",
    ]
    session.expire_all()
    contact = session.scalar(select(Contact).where(Contact.phone == PHONE))
    assert contact.attributes == {"first_name": "Asha", "city": "Pune"}
    run = session.scalar(select(FlowSession))
    assert (run.status, run.reprompts, run.answers) == ("completed", 1, {"name": "Asha", "city": "Pune"})
    handled = session.scalars(select(InboundMessage.handled_by).order_by(InboundMessage.id)).all()
    assert handled == ["trigger", "flow", "flow", "flow"]


def test_an_answer_by_number_branches(app, client, session, redis, run_worker, signup):
    say(client, app, "join")
    say(client, app, "Ravi")
    say(client, app, "3")
    run_worker()
    assert screen(redis)[-1] == "Goa! Our beach store is open daily, Ravi."
    session.expire_all()
    assert session.scalar(select(Contact.attributes).where(Contact.phone == PHONE))["city"] == "Goa"


def test_a_contact_who_stops_answering_times_out_cleanly(app, client, session, redis, run_worker, signup):
    say(client, app, "register")
    run_worker()
    db = app.extensions["chatman.db"]
    assert tick(redis, [expire_flows(db, redis)], now=utcnow()) == 0  # not overdue yet
    assert tick(redis, [expire_flows(db, redis)], now=utcnow() + timedelta(seconds=3601)) == 1
    run_worker()  # the clock's job ends the flow and sends the timeout message
    session.expire_all()
    assert session.scalar(select(FlowSession.status)) == "timed_out"
    assert screen(redis)[-1] == "Let's finish another time!"
    say(client, app, "Asha")  # no longer an answer: nothing is saved
    session.expire_all()
    assert session.scalar(select(Contact.attributes).where(Contact.phone == PHONE)) == {}
    assert session.scalars(select(InboundMessage.handled_by).order_by(InboundMessage.id)).all()[-1] is None


def test_stop_ends_the_flow(app, client, session, redis, run_worker, signup):
    say(client, app, "join")
    say(client, app, "STOP")
    session.expire_all()
    assert session.scalar(select(FlowSession.status)) == "stopped"


def test_flow_definitions_are_checked(session):
    define(session, age="number")
    broken = [
        (
            [{"id": "a", "type": "ask", "text": "?", "next": "nowhere"}],
            "steps[0].next",
            "refers to step 'nowhere'",
        ),
        (
            [{"id": "a", "type": "ask", "text": "?", "save_to": "x", "attribute_type": "integer"}],
            "steps[0].attribute_type",
            "unknown attribute type 'integer'",
        ),
        (
            [{"id": "a", "type": "ask", "text": "Age?", "validate": "text", "save_to": "age"}],
            "steps[0].save_to",
            "holds number",
        ),
        (
            [{"id": "a", "type": "ask", "text": "?", "validate": "choice"}],
            "steps[0].buttons",
            "needs buttons",
        ),
        (
            [
                {"id": "a", "type": "message", "text": "x", "next": "b"},
                {"id": "b", "type": "message", "text": "y", "next": "a"},
            ],
            "steps",
            "in a loop",
        ),
        ([{"id": "a", "type": "shout", "text": "x"}], "steps[0].type", "one of message, ask"),
        ([], "steps", "at least one step"),
    ]
    for steps, field, says in broken:
        with pytest.raises(Invalid) as error:
            save_flow(session, {"name": "f", "steps": steps})
        assert any(says in reason for reason in error.value.errors.get(field, [])), (
            field,
            error.value.errors,
        )
        session.rollback()
