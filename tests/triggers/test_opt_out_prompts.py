"""Opt-out and opt-in said in other words, at the edges: the "Reply STOP" prompt (once a day,
no rule or trigger on that reply), contacts who are DND, handed over or in a flow, buttons
with payloads of their own, re-subscribing only by START, and what must never opt out."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chatman.config import Settings
from chatman.contacts.dnd import set_dnd
from chatman.contacts.models import Contact
from chatman.flows import engine as flows
from chatman.flows.crud import save_flow
from chatman.messaging.models import InboundMessage
from chatman.messaging.simulator import sent_to
from chatman.rules import crud as rules
from chatman.rules.models import RuleFiring
from chatman.timeutils import utcnow
from chatman.triggers.crud import save_trigger
from chatman.triggers.handover import hand_over
from chatman.triggers.matcher import TriggerSpec, build_index
from chatman.triggers.optout import OptWords, opt_verdict
from chatman.triggers.phrases import MAX_CLAUSES, clauses
from tests.factories import define, inbound_form, make_contact, make_submitted_run, signed_post

URL = "/webhooks/twilio/inbound"
WORDS = OptWords.of(Settings.opt_out_keywords, Settings.opt_in_keywords, Settings.opt_out_payload)
ANNOYED = "why do you keep messaging me"


def say(client, app, phone, text, **fields):
    assert signed_post(client, app, URL, inbound_form(phone, text, **fields)).status_code == 200


def handled(session) -> list[str | None]:
    session.expire_all()
    return session.scalars(select(InboundMessage.handled_by).order_by(InboundMessage.id)).all()


@pytest.fixture
def offers(session):
    trigger = save_trigger(
        session,
        {
            "name": "offers",
            "examples": ["any offers", "send me offers", "promo messages"],
            "action": "reply",
            "reply_body": "Big sale today!",
        },
    )
    session.commit()
    return trigger


def test_the_prompt_goes_once_a_day_however_often_the_customer_complains(
    app, client, session, redis, run_worker, offers
):
    asha = make_contact(session, name="Asha")
    for _ in range(3):
        say(client, app, asha.phone, ANNOYED)
    run_worker()
    assert [m["body"] for m in sent_to(redis, asha.phone)] == [Settings.opt_out_prompt]
    assert handled(session) == ["opt_out_prompt"] * 3


def test_no_post_campaign_rule_acts_on_a_reply_that_reads_like_an_opt_out(app, client, session, run_worker):
    define(session, stage="string")
    campaign, _, _, (annoyed, happy) = make_submitted_run(session, 2)
    talking = rules.create_rule(
        session,
        campaign.id,
        {
            "name": "replied: talking",
            "condition": {"replied": True},
            "actions": [{"type": "set_attribute", "attribute": "stage", "value": "talking"}],
        },
    )
    session.commit()
    for message, text in ((annoyed, ANNOYED), (happy, "ok tell me more")):
        phone = session.get(Contact, message.contact_id).phone
        say(client, app, phone, text)
    run_worker()
    session.expire_all()
    fired = session.scalars(select(RuleFiring.contact_id).where(RuleFiring.rule_id == talking.id)).all()
    assert fired == [happy.contact_id]  # the other reply asked us to stop, perhaps


def test_dnd_and_handed_over_contacts_get_no_prompt_and_a_flow_does_not_take_it(
    app, client, session, redis, run_worker, offers
):
    gone, paused, asking = (make_contact(session, name=n) for n in ("Gone", "Paused", "Asking"))
    set_dnd(session, [gone.id], "opt_out", utcnow())
    hand_over(session, paused.id, "agent@example.com", utcnow())
    flow = save_flow(
        session,
        {"name": "size", "steps": [{"id": "q", "type": "ask", "text": "Your size?", "save_to": "size"}]},
    )
    session.commit()
    flows.start(session, flow.id, asking.id)
    session.commit()
    for contact in (gone, paused, asking):
        say(client, app, contact.phone, ANNOYED)
    run_worker()
    assert handled(session) == ["dnd", "person", "opt_out_prompt"]
    assert sent_to(redis, gone.phone) == [] and sent_to(redis, paused.phone) == []
    assert [m["body"] for m in sent_to(redis, asking.phone)][-1] == Settings.opt_out_prompt
    session.expire_all()
    assert session.get(Contact, asking.id).attributes.get("size") is None  # not taken as the answer


def test_a_stop_button_with_a_payload_of_its_own_opts_out_and_a_trigger_button_still_answers(
    app, client, session, redis, run_worker
):
    save_trigger(
        session,
        {
            "name": "later",
            "match_type": "button",
            "patterns": ["REMIND_LATER"],
            "action": "reply",
            "reply_body": "Ok!",
        },
    )
    session.commit()
    ravi, meera = make_contact(session, name="Ravi"), make_contact(session, name="Meera")
    say(
        client,
        app,
        ravi.phone,
        "Stop promotional messages",
        ButtonPayload="STOP_PROMOS",
        ButtonText="Stop promotional messages",
    )
    say(
        client,
        app,
        meera.phone,
        "Not now, stop asking",
        ButtonPayload="REMIND_LATER",
        ButtonText="Not now, stop asking",
    )
    run_worker()
    session.expire_all()
    assert session.get(Contact, ravi.id).dnd is True
    assert session.get(Contact, meera.id).dnd is False
    assert [m["body"] for m in sent_to(redis, meera.phone)] == ["Ok!"]


def test_only_start_brings_back_a_contact_who_opted_out(app, client, session, redis, run_worker):
    asha = make_contact(session, name="Asha")
    say(client, app, asha.phone, "STOP")
    say(client, app, asha.phone, "never send me messages again")  # a second opt-out, no way back
    say(client, app, asha.phone, "please start sending me your offers again")
    run_worker()
    session.expire_all()
    assert session.get(Contact, asha.id).dnd is True  # a resemblance is not consent
    assert [m["body"] for m in sent_to(redis, asha.phone)][-1] == Settings.opt_in_prompt
    say(client, app, asha.phone, "START")
    run_worker()
    session.expire_all()
    assert session.get(Contact, asha.id).dnd is False
    assert handled(session) == ["opt_out", "opt_out", "opt_in_prompt", "opt_in"]


@pytest.fixture(scope="module")
def shop():
    from tests.triggers.intent_set import TRIGGERS

    return build_index(
        [TriggerSpec(i + 1, "examples", (), examples=tuple(e), **x) for i, (_, e, x) in enumerate(TRIGGERS)]
    )


@pytest.mark.parametrize(
    "text",
    [
        "stop sending the parcel",
        "stop sending me the wrong size",
        "stop sending to my old address",
        "no more",
        "can i unsubscribe later if i want",
        "I want to stop my order",
        "please don't stop the offers",
        "never send me the bill by post, email it",
    ],
)
def test_what_must_never_opt_out(shop, text):
    assert opt_verdict(WORDS, shop, text, None).kind != "opt_out"


@pytest.mark.parametrize(
    "text",
    [
        "dont send me promo messages",
        "never send me offers again",
        "do not message me",
        "मुझे मैसेज मत भेजो",
        "please stop",
    ],
)
def test_opt_outs_in_other_words_and_scripts(shop, text):
    assert opt_verdict(WORDS, shop, text, None).kind == "opt_out"


@pytest.mark.parametrize(
    "text",
    ["never send me messages again", "do not add me back to your list", "dont send me your messages again"],
)
def test_a_negated_sentence_is_never_an_opt_in(shop, text):
    assert opt_verdict(WORDS, shop, text, None).kind != "opt_in"


def test_a_pasted_essay_is_judged_on_its_beginning(shop):
    essay = "where is my order, " * 2000
    assert len(clauses(essay)) == MAX_CLAUSES
    assert shop.candidates(essay)[0].phrase == "where is my order"


def test_a_trigger_for_thanks_still_answers_thanks_and_a_rule_keeps_its_own_words():
    index = build_index([TriggerSpec(1, "keyword", ("thanks",)), TriggerSpec(2, "keyword", ("refund",))])
    assert [c.trigger.id for c in index.candidates("thanks!")] == [1]
    assert 2 not in [c.trigger.id for c in index.candidates("got my refund, thanks")]
    words_only = build_index([TriggerSpec(2, "keyword", ("refund",))], understand=False)
    assert [c.trigger.id for c in words_only.candidates("got my refund, thanks")] == [2]


def test_a_keyword_trigger_answers_when_the_example_phrase_trigger_is_cooling_down(
    app, client, session, redis, run_worker
):
    save_trigger(
        session,
        {
            "name": "where",
            "examples": ["where is my order"],
            "cooldown_s": 3600,
            "action": "reply",
            "reply_body": "On its way",
        },
    )
    save_trigger(
        session,
        {
            "name": "orders",
            "match_type": "keyword",
            "patterns": ["order"],
            "action": "reply",
            "reply_body": "Order desk",
        },
    )
    session.commit()
    asha = make_contact(session, name="Asha")
    say(client, app, asha.phone, "where is my order")
    say(client, app, asha.phone, "where is my order??")
    run_worker()
    assert [m["body"] for m in sent_to(redis, asha.phone)] == ["On its way", "Order desk"]


@pytest.mark.parametrize(
    "text",
    [
        "I do not want your offers on whatsapp",
        "please no more promotional texts",
        "quit sending me deals",
        "enough with the promo messages",
    ],
)
def test_a_refusal_no_phrase_is_close_to_is_still_asked_and_never_answered_with_an_offer(shop, text):
    assert opt_verdict(WORDS, shop, text, None).kind in ("opt_out", "opt_out_prompt")
