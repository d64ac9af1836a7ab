"""/simulator: be a customer of your own business, with no WhatsApp account.

Only while the simulator is the provider (no Twilio credentials). A message "written" here
goes through the real, signed inbound webhook at PUBLIC_BASE_URL, as Twilio would post it.
"""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint, abort
from sqlalchemy import select

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.contacts.fields import normalise_phone
from chatman.contacts.models import Contact
from chatman.extensions import redis_client, request_session, settings
from chatman.messaging import simulator
from chatman.messaging.models import InboundMessage

blp = Blueprint("simulator", __name__, url_prefix="/simulator", description="The simulated WhatsApp network")
blp.before_request(require_token)
blp.before_request(check_request)


@blp.before_request
def only_with_the_simulator() -> None:
    config = settings()
    if config.twilio_account_sid and config.twilio_auth_token:
        abort(409, message="Twilio is the provider (TWILIO_* are set): the simulator is off")


class SayArgs(ma.Schema):
    phone = fields.Text(required=True, max=64)
    body = fields.Text(load_default=None, max=4096)
    button_payload = fields.Text(load_default=None, max=256)
    button_text = fields.Text(load_default=None, max=256)
    replied_sid = fields.Text(
        load_default=None, max=64, metadata={"description": "the message of ours it quotes"}
    )
    profile_name = fields.Text(load_default=None, max=200)


class SaidSchema(ma.Schema):
    message_sid = fields.Text()
    webhook_status = fields.Integer()


class ConversationArgs(ma.Schema):
    phone = fields.Text(required=True, max=64)


class ConversationSchema(ma.Schema):
    phone = fields.Text()
    messages = ma.fields.List(ma.fields.Dict(), metadata={"description": "in and out, oldest first"})


@blp.route("/messages")
class Messages(MethodView):
    @blp.arguments(SayArgs)
    @blp.response(202, SaidSchema)
    def post(self, args):
        """A simulated customer writes to the business (text, or a button tap). 502 when our own
        inbound webhook did not take it (a PUBLIC_BASE_URL that is not this server)."""
        if not (args["body"] or args["button_payload"]):
            abort(422, message="say something: body or button_payload", errors={"body": ["required"]})
        phone = normalise_phone(args["phone"], settings().default_region)
        url = settings().public_base_url + "/webhooks/twilio/inbound"
        try:
            sid, status = simulator.customer_says(
                url,
                settings().webhook_auth_token,
                phone,
                body=args["body"],
                button_payload=args["button_payload"],
                button_text=args["button_text"],
                replied_sid=args["replied_sid"],
                profile_name=args["profile_name"],
            )
        except OSError as error:  # requests' errors are OSErrors
            abort(
                502,
                message=f"nobody answers at {url} ({error.__class__.__name__}); "
                "is PUBLIC_BASE_URL this server?",
            )
        if status != 200:
            abort(
                502,
                message=f"the inbound webhook at {url} answered HTTP {status}; the message was not received",
            )
        return {"message_sid": sid, "webhook_status": status}

    @blp.arguments(ConversationArgs, location="query")
    @blp.response(200, ConversationSchema)
    def get(self, args):
        """The conversation with one phone as its screen would show it."""
        phone = normalise_phone(args["phone"], settings().default_region)
        session = request_session()
        received = session.execute(
            select(InboundMessage.body, InboundMessage.button_text, InboundMessage.received_at)
            .join(Contact, Contact.id == InboundMessage.contact_id)
            .where(Contact.phone == phone)
        ).all()
        messages = [
            {"from": "customer", "text": r.body or r.button_text, "at": r.received_at.timestamp()}
            for r in received
        ]
        messages += [
            {"from": "business", "text": s["body"], "content_sid": s["content_sid"], "at": s.get("at", 0)}
            for s in simulator.sent_to(redis_client(), phone)
        ]
        return {"phone": phone, "messages": sorted(messages, key=lambda m: m["at"])}
