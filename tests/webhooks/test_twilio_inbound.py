"""POST /webhooks/twilio/inbound: signed, stored once, window opened, replies attributed."""

from __future__ import annotations

from sqlalchemy import func, select

from chatman.contacts.models import Contact
from chatman.ledger import counters
from chatman.messaging.models import InboundMessage
from chatman.timeutils import utcnow
from tests.factories import inbound_form, make_submitted_run, signed_post

URL = "/webhooks/twilio/inbound"


def count(session, model) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model))


def test_a_new_customer_is_upserted_the_message_kept_once_and_the_window_opened(app, client, session):
    form = inbound_form("+919820012345", "Hello!", ProfileName="Asha", SomeFieldTwilioAddedLater="x")
    first = signed_post(client, app, URL, form)
    assert first.status_code == 200 and first.content_type.startswith("text/xml")
    assert b"<Response" in first.data and b"<Message" not in first.data  # no TwiML reply of its own
    again = signed_post(client, app, URL, form)  # Twilio retrying the same message
    assert again.status_code == 200
    assert count(session, InboundMessage) == 1 and count(session, Contact) == 1
    contact = session.scalar(select(Contact))
    assert (contact.phone, contact.wa_id, contact.name) == ("+919820012345", "919820012345", "Asha")
    assert (utcnow() - contact.last_inbound_at).total_seconds() < 60
    stored = session.scalar(select(InboundMessage))
    assert stored.body == "Hello!" and stored.payload["SomeFieldTwilioAddedLater"] == "x"


def test_bad_or_missing_signature_gets_403_and_stores_nothing(app, client, session):
    form = inbound_form("+919820012345", "Hello!")
    assert signed_post(client, app, URL, form, signature=None).status_code == 403
    assert signed_post(client, app, URL, form, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    settings = app.extensions["chatman.settings"]
    from twilio.request_validator import RequestValidator

    good = RequestValidator(settings.webhook_auth_token).compute_signature(
        settings.public_base_url + URL, form
    )
    tampered = form | {"Body": "Hello?"}
    assert signed_post(client, app, URL, tampered, signature=good).status_code == 403
    assert count(session, InboundMessage) == 0 and count(session, Contact) == 0


def test_a_profile_name_does_not_overwrite_a_name_the_marketer_gave(app, client, session):
    from tests.factories import make_contact

    make_contact(session, phone="+919820012345", name="Asha Rao")
    signed_post(client, app, URL, inbound_form("+919820012345", "hi", ProfileName="ash"))
    session.expire_all()
    assert session.scalar(select(Contact.name)) == "Asha Rao"


def test_media_location_and_buttons_are_kept(app, client, session):
    signed_post(
        client,
        app,
        URL,
        inbound_form(
            "+919820012345",
            "",
            NumMedia="1",
            MediaUrl0="https://api.twilio.com/media/ME1",
            MediaContentType0="image/jpeg",
            MessageType="image",
        ),
    )
    signed_post(
        client,
        app,
        URL,
        inbound_form(
            "+919820012345", "", Latitude="18.52", Longitude="73.85", Label="Shop", MessageType="location"
        ),
    )
    signed_post(
        client, app, URL, inbound_form("+919820012345", "Yes", ButtonText="Yes", ButtonPayload="YES_1")
    )
    rows = session.scalars(select(InboundMessage).order_by(InboundMessage.id)).all()
    assert (rows[0].media_url, rows[0].media_type) == ("https://api.twilio.com/media/ME1", "image/jpeg")
    assert (rows[1].latitude, rows[1].longitude, rows[1].location_label) == (18.52, 73.85, "Shop")
    assert (rows[2].button_text, rows[2].button_payload) == ("Yes", "YES_1")


def test_replies_are_attributed_to_the_campaign_message_and_counted_once(app, client, session):
    campaign, run, step, messages = make_submitted_run(session, 2)
    quoted, latest = messages
    phone_q = session.get(Contact, quoted.contact_id).phone
    phone_l = session.get(Contact, latest.contact_id).phone
    signed_post(
        client,
        app,
        URL,
        inbound_form(phone_q, "Yes!", ButtonPayload="YES", OriginalRepliedMessageSid=quoted.provider_sid),
    )
    signed_post(client, app, URL, inbound_form(phone_q, "and another thing"))
    signed_post(client, app, URL, inbound_form(phone_l, "interested"))  # no quote: the latest within 72 h
    session.expire_all()
    replies = dict(session.execute(select(InboundMessage.body, InboundMessage.reply_to_id)).all())
    assert replies == {"Yes!": quoted.id, "and another thing": quoted.id, "interested": latest.id}
    stored = counters.stored(session, campaign.id)
    assert stored[(campaign.id, run.id, step.id, "replied")] == 2  # two messages replied to, once each
    assert counters.differences(session, campaign.id) == []


def test_an_unparseable_sender_is_a_400_and_stores_nothing(app, client, session):
    assert signed_post(client, app, URL, inbound_form("12", "hi")).status_code == 400
    assert count(session, InboundMessage) == 0
    assert signed_post(client, app, URL, {"Body": "hi"}).status_code == 400
