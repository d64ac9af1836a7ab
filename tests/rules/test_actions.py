"""Rules that start things: a follow-up message (a triggered campaign, under the send policy),
a drip enrollment, a flow; values filled from the reply and the button; conditions on a
reply's words, on what did not happen (not), and on skipped sends."""

from __future__ import annotations

from datetime import timedelta

from redis import Redis
from sqlalchemy import select, update

from chatman.campaigns import lifecycle
from chatman.campaigns.models import Enrollment
from chatman.clock import deliver_due_webhooks, tick
from chatman.contacts.models import Contact
from chatman.flows.crud import save_flow
from chatman.jobs import enqueue_dispatch
from chatman.ledger.models import Message
from chatman.messaging.templates import save_template
from chatman.timeutils import pinned, utcnow
from tests.conftest import REDIS_URL, twilio_env
from tests.factories import define, inbound_form, launch_campaign, make_submitted_run, signed_post
from tests.rules.test_rules import INBOUND, contact, firings, members, rule, static
from tests.webhooks.test_twilio_status import params, post


def running(session, data: dict):
    campaign = lifecycle.create_campaign(session, data)
    lifecycle.launch(session, campaign.id)
    session.commit()
    return campaign


def test_follow_up_flow_and_drip_started_by_replies_and_taps_reach_the_provider(
    app, client, session, run_worker, twilio_stub
):
    define(session, wants="string", asked="string")
    campaign, _, _, messages = make_submitted_run(session, 3)
    caller, asker, quiet = messages
    template = save_template(
        session,
        {"name": "nurture", "language": "en", "category": "utility", "status": "approved", "body": "Tip 1"},
    )
    follow_up = running(
        session,
        {
            "name": "call back",
            "kind": "triggered",
            "trigger_event": "call_me",
            "body": "Thanks, an agent will call you today.",
        },
    )
    nurture = running(
        session,
        {
            "name": "nurture",
            "kind": "drip",
            "trigger_event": "nurture",
            "steps": [{"template_id": template.id}],
        },
    )
    flow = save_flow(
        session,
        {
            "name": "pricing",
            "steps": [{"id": "size", "type": "ask", "text": "Which plan size?", "validate": "text"}],
        },
    )
    session.commit()
    tapped = rule(
        session,
        campaign,
        "call me",
        {"tapped": "CALL_ME"},
        {"type": "set_attribute", "attribute": "wants", "value": "{{button}}"},
        {"type": "start_campaign", "campaign_id": follow_up.id},
    )
    price = rule(
        session,
        campaign,
        "asked the price",
        {"replied": {"match_type": "keyword", "patterns": ["price", "cost"]}},
        {"type": "set_attribute", "attribute": "asked", "value": "{{reply}}"},
        {"type": "start_flow", "flow_id": flow.id},
    )
    talked = rule(
        session,
        campaign,
        "replied without asking to be called",
        {"all": [{"replied": True}, {"not": {"tapped": "CALL_ME"}}]},
        {"type": "start_campaign", "campaign_id": nurture.id},
    )
    session.commit()
    for message in messages:
        post(client, app, params(message.provider_sid, "read"))
    phone = {m.id: contact(session, m).phone for m in messages}
    tap = inbound_form(
        phone[caller.id],
        "Call me",
        ButtonPayload="CALL_ME",
        ButtonText="Call me",
        OriginalRepliedMessageSid=caller.provider_sid,
    )
    question = inbound_form(phone[asker.id], "what's the price for 5 people?")
    assert signed_post(client, app, INBOUND, tap).status_code == 200
    assert signed_post(client, app, INBOUND, question).status_code == 200
    run_worker(**twilio_env(twilio_stub))

    sent = {m["to"].removeprefix("whatsapp:"): m["body"] for m in twilio_stub.messages(full=True)["messages"]}
    assert sent[phone[caller.id]] == "Thanks, an agent will call you today."
    assert sent[phone[asker.id]] == "Which plan size?"
    assert phone[quiet.id] not in sent
    assert contact(session, caller).attributes == {"wants": "Call me"}
    assert contact(session, asker).attributes == {"asked": "what's the price for 5 people?"}
    enrolled = session.scalars(select(Enrollment.contact_id).where(Enrollment.campaign_id == nurture.id))
    assert list(enrolled) == [asker.contact_id]
    assert [(f.contact_id, f.status) for f in firings(session, tapped)] == [(caller.contact_id, "done")]
    assert [(f.contact_id, f.status) for f in firings(session, price)] == [(asker.contact_id, "done")]
    assert [f.contact_id for f in firings(session, talked)] == [asker.contact_id]
    # The follow-up is a run of its own, in the ledger, that knows which rule started it.
    follow_ups = session.scalars(select(Message).where(Message.campaign_id == follow_up.id)).all()
    assert [(m.contact_id, m.status) for m in follow_ups] == [(caller.contact_id, "submitted")]

    # A follow-up goes under the send policy: a contact who opted out meanwhile is skipped.
    session.execute(update(Contact).where(Contact.id == quiet.contact_id).values(dnd=True))
    session.commit()
    late_tap = inbound_form(
        phone[quiet.id],
        "Call me",
        ButtonPayload="CALL_ME",
        ButtonText="Call me",
        OriginalRepliedMessageSid=quiet.provider_sid,
    )
    assert signed_post(client, app, INBOUND, late_tap).status_code == 200
    run_worker(**twilio_env(twilio_stub))
    assert twilio_stub.messages()["count"] == 2
    skipped = session.scalars(
        select(Message.skip_reason).where(
            Message.campaign_id == follow_up.id, Message.contact_id == quiet.contact_id
        )
    ).all()
    assert skipped == ["dnd"]


def test_a_rule_on_skipped_sends_by_reason(session, redis, run_worker, twilio_stub):
    define(session, skips="number")
    campaign, run = launch_campaign(session, 4, body=None, freeze=False)
    dnd_contacts = session.scalars(select(Contact.id).order_by(Contact.id).limit(2)).all()
    session.execute(update(Contact).where(Contact.id.in_(dnd_contacts)).values(dnd=True, dnd_reason="stop"))
    suppressed = static(session, "suppressed")
    by_dnd = rule(
        session,
        campaign,
        "skipped: dnd",
        {"skipped": "dnd"},
        {"type": "add_to_segment", "segment_id": suppressed.id},
    )
    by_window = rule(
        session, campaign, "skipped: window", {"skipped": "outside_window"}, {"type": "clear_dnd"}
    )
    any_skip = rule(
        session, campaign, "skipped", {"skipped": True}, {"type": "increment_attribute", "attribute": "skips"}
    )
    session.commit()
    enqueue_dispatch(redis, run.id)
    run_worker(**twilio_env(twilio_stub))
    assert {f.contact_id for f in firings(session, by_dnd)} == set(dnd_contacts)
    assert members(session, suppressed) == set(dnd_contacts)
    assert firings(session, by_window) == []
    assert {f.contact_id for f in firings(session, any_skip)} == set(dnd_contacts)
    assert twilio_stub.messages()["count"] == 2


def test_a_tap_tells_the_crm_through_a_signed_webhook(app, client, session, run_worker):
    import json

    from chatman.outgoing import endpoints
    from chatman.outgoing.models import WebhookDelivery
    from tests.outgoing.crm_stub import CrmStub

    define(session, tier="string")
    campaign, _, _, (message,) = make_submitted_run(session, 1)
    crm = CrmStub().start()
    try:
        endpoint = endpoints.create_endpoint(session, {"name": "CRM", "url": crm.url}, allow_private=True)
        session.commit()
        crm.secret = endpoint.secret
        crm.answer(503, 200)  # down once, then up: the same delivery, retried by the clock
        tell = rule(
            session,
            campaign,
            "call me: tell the CRM",
            {"tapped": "CALL_ME"},
            {"type": "set_attribute", "attribute": "tier", "value": "hot"},
            {"type": "call_webhook", "endpoint_id": endpoint.id},
        )
        session.commit()
        phone = contact(session, message).phone
        tap = inbound_form(
            phone,
            "Call me",
            ButtonPayload="CALL_ME",
            ButtonText="Call me",
            OriginalRepliedMessageSid=message.provider_sid,
        )
        assert signed_post(client, app, INBOUND, tap).status_code == 200
        run_worker(WEBHOOK_ALLOW_PRIVATE="true")
        assert [r.answered for r in crm.received] == [503]
        # The retry is due 5 s later: the clock finds it.
        redis = Redis.from_url(REDIS_URL)
        later = utcnow() + timedelta(seconds=6)
        with pinned(later):
            tick(redis, [deliver_due_webhooks(app.extensions["chatman.db"], redis)], later)
        run_worker(WEBHOOK_ALLOW_PRIVATE="true")
        assert [r.answered for r in crm.received] == [503, 200]
        assert all(r.verified for r in crm.received), [r.why for r in crm.received]
        assert len({r.webhook_id for r in crm.received}) == 1
        sent = json.loads(crm.received[-1].body)
        assert sent["type"] == "rule.fired"
        assert sent["data"]["rule"] == {"id": tell.id, "name": "call me: tell the CRM"}
        assert sent["data"]["contact"]["phone"] == phone
        assert sent["data"]["contact"]["attributes"] == {"tier": "hot"}  # the action before it
        assert sent["data"]["message"]["buttons"] == ["Call me"]
        session.expire_all()
        assert session.scalars(select(WebhookDelivery.status)).all() == ["delivered"]
        assert [f.status for f in firings(session, tell)] == ["done"]
    finally:
        crm.stop()
