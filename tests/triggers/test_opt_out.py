"""STOP and START: DND set and cleared by the customer, confirmed once, honoured by broadcasts."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from chatman.campaigns import lifecycle
from chatman.contacts import segments
from chatman.contacts.models import Contact
from chatman.jobs import enqueue_dispatch
from chatman.ledger.models import Message
from chatman.messaging.models import InboundMessage
from chatman.messaging.simulator import sent_to
from chatman.messaging.templates import save_template
from chatman.triggers.optout import OptWords
from tests.factories import inbound_form, make_contact, signed_post

URL = "/webhooks/twilio/inbound"
WORDS = OptWords.of(
    ("STOP", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"), ("START", "UNSTOP"), "OPT_OUT"
)


@pytest.mark.parametrize(
    "text", ["STOP", "stop", "Stop.", "STOP!!!", "stop all", "Unsubscribe 🙏", "  quit ", "Stooop"]
)
def test_opt_out_words_in_any_case_and_punctuation(text):
    assert WORDS.classify(text, None) == "opt_out"


@pytest.mark.parametrize(
    "text", ["please don't stop the offers", "stop sending me cancel emails?", "ending", "hi"]
)
def test_words_inside_a_sentence_are_not_an_opt_out(text):
    assert WORDS.classify(text, None) is None


def test_the_opt_out_button_and_start_words():
    assert WORDS.classify("Stop promotions", "opt_out") == "opt_out"
    assert WORDS.classify("START", None) == WORDS.classify("unstop!", None) == "opt_in"


def broadcast(session, redis, run_worker, segment_id, template_id, name):
    campaign = lifecycle.create_campaign(
        session, {"name": name, "template_id": template_id, "include_segments": [segment_id]}
    )
    run = lifecycle.launch(session, campaign.id)
    session.commit()
    enqueue_dispatch(redis, run.id)
    run_worker()
    session.expire_all()
    return {
        m.contact_id: (m.status, m.skip_reason)
        for m in session.scalars(select(Message).where(Message.run_id == run.id))
    }


def test_stop_makes_the_contact_dnd_and_the_next_broadcast_skips_them_until_start(
    app, client, session, redis, run_worker
):
    asha, ravi = make_contact(session, name="Asha"), make_contact(session, name="Ravi")
    everyone = segments.create_segment(session, {"name": "all", "kind": "static"})
    segments.add_members(session, everyone.id, [asha.id, ravi.id])
    news = save_template(
        session,
        {"name": "news", "language": "en", "category": "marketing", "status": "approved", "body": "News!"},
    )
    session.commit()

    assert signed_post(client, app, URL, inbound_form(asha.phone, "STOP")).status_code == 200
    assert signed_post(client, app, URL, inbound_form(asha.phone, "stop!")).status_code == 200  # said twice
    run_worker()  # sends the confirmation
    session.expire_all()
    contact = session.get(Contact, asha.id)
    assert (contact.dnd, contact.dnd_reason) == (True, "opt_out")
    confirmations = [m["body"] for m in sent_to(redis, asha.phone)]
    assert len(confirmations) == 1 and "unsubscribed" in confirmations[0]  # once, though STOP came twice
    assert session.scalars(select(InboundMessage.handled_by)).all() == ["opt_out", "opt_out"]

    first = broadcast(session, redis, run_worker, everyone.id, news.id, "first")
    assert first == {asha.id: ("skipped", "dnd"), ravi.id: ("submitted", None)}
    assert [m["body"] for m in sent_to(redis, asha.phone)] == confirmations  # nothing else, ever

    signed_post(client, app, URL, inbound_form(asha.phone, "START"))
    run_worker()
    session.expire_all()
    assert session.get(Contact, asha.id).dnd is False
    assert "subscribed again" in sent_to(redis, asha.phone)[-1]["body"]
    second = broadcast(session, redis, run_worker, everyone.id, news.id, "second")
    assert second == {asha.id: ("submitted", None), ravi.id: ("submitted", None)}


def test_start_does_not_lift_a_dnd_the_marketer_set(app, client, session, redis, run_worker):
    spammer = make_contact(session, dnd=True, dnd_reason="spam")
    signed_post(client, app, URL, inbound_form(spammer.phone, "START"))
    run_worker()
    session.expire_all()
    assert (session.get(Contact, spammer.id).dnd, sent_to(redis, spammer.phone)) == (True, [])


def test_a_dnd_contact_gets_no_trigger_reply(app, client, session, redis, run_worker):
    from chatman.triggers.crud import save_trigger

    save_trigger(
        session,
        {"name": "hi", "match_type": "exact", "patterns": ["hi"], "action": "reply", "reply_body": "Hello!"},
    )
    quiet = make_contact(session, dnd=True, dnd_reason="opt_out")
    session.commit()
    signed_post(client, app, URL, inbound_form(quiet.phone, "hi"))
    run_worker()
    session.expire_all()
    assert sent_to(redis, quiet.phone) == []
    assert session.scalar(select(InboundMessage.handled_by)) == "dnd"
