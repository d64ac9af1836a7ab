"""Deleting a contact erases the person and keeps the anonymous ledger: campaign figures, and
`flask reports verify`, do not change after the fact."""

from __future__ import annotations

from sqlalchemy import func, select

from chatman.campaigns import lifecycle
from chatman.contacts.models import Contact
from chatman.jobs import enqueue_dispatch
from chatman.ledger import counters
from chatman.ledger.models import Message, MessageEvent
from chatman.messaging.models import InboundMessage
from tests.factories import inbound_form, launch_campaign, make_submitted_run, signed_post
from tests.webhooks.test_twilio_status import params


def figures(client, auth, campaign_id: int) -> dict:
    return client.get(f"/api/v1/campaigns/{campaign_id}", headers=auth).json["counters"]


def test_deleting_contacts_who_got_messages_keeps_every_figure(app, client, auth, session, redis, run_worker):
    campaign, run, step, messages = make_submitted_run(session, 10)
    for i, message in enumerate(messages):
        for status in ("sent", "delivered", "read")[: 1 + i % 3]:
            assert (
                signed_post(
                    client, app, "/webhooks/twilio/status", params(message.provider_sid, status)
                ).status_code
                == 204
            )
    phone = session.get(Contact, messages[0].contact_id).phone
    reply = inbound_form(phone, "Thanks!", OriginalRepliedMessageSid=messages[0].provider_sid)
    assert signed_post(client, app, "/webhooks/twilio/inbound", reply).status_code == 200
    run_worker()
    before = figures(client, auth, campaign.id)
    assert before["read"] == 3 and before["replied"] == 1

    gone = [m.contact_id for m in messages[:5]]
    for contact_id in gone:
        assert client.delete(f"/api/v1/contacts/{contact_id}", headers=auth).status_code == 204
        assert client.get(f"/api/v1/contacts/{contact_id}", headers=auth).status_code == 404

    assert figures(client, auth, campaign.id) == before
    verify = app.test_cli_runner().invoke(args=["reports", "verify"])
    assert verify.exit_code == 0 and "all equal to the recount" in verify.output, verify.output
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Message)) == 10  # rows kept...
    orphans = session.scalars(select(Message).where(Message.contact_id.is_(None))).all()
    assert {m.id for m in orphans} == {m.id for m in messages[:5]}  # ...without the person
    sids = [m.provider_sid for m in orphans]
    payloads = session.scalars(select(MessageEvent.payload).where(MessageEvent.provider_sid.in_(sids))).all()
    assert payloads and all(p == {} for p in payloads)  # the callbacks named the phone
    assert session.scalar(select(func.count()).select_from(InboundMessage)) == 0  # what they wrote
    kept = session.scalars(select(MessageEvent.payload).where(MessageEvent.provider_sid.not_in(sids))).all()
    assert kept and all(p.get("MessageSid") for p in kept)  # the others' are untouched
    assert client.delete(f"/api/v1/contacts/{gone[0]}", headers=auth).status_code == 404


def test_a_contact_deleted_before_their_turn_is_skipped_and_counted(
    app, client, auth, session, redis, run_worker
):
    campaign, run = launch_campaign(session, 12, body="hi")
    victim = session.scalars(select(Contact).where(Contact.dnd.is_(False)).order_by(Contact.id)).first()
    assert client.delete(f"/api/v1/contacts/{victim.id}", headers=auth).status_code == 204
    enqueue_dispatch(redis, run.id)
    run_worker()
    session.expire_all()
    reasons = dict(
        session.execute(select(Message.skip_reason, func.count()).group_by(Message.skip_reason)).all()
    )
    assert reasons["contact_deleted"] == 1
    assert counters.differences(session, campaign.id) == []
    assert lifecycle.get_campaign(session, campaign.id).status == "completed"
