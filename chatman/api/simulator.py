"""/simulator: be a customer of your own business, with no WhatsApp account.

Only while the simulator is the provider (no Twilio credentials). A message "written" here
goes through the real, signed inbound webhook at PUBLIC_BASE_URL, as Twilio would post it.
"""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint, abort

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.contacts.fields import normalise_phone
from chatman.extensions import redis_client, request_session, settings
from chatman.messaging import simulator

blp = Blueprint("simulator", __name__, url_prefix="/simulator", description="The simulated WhatsApp network")
blp.before_request(require_token)
blp.before_request(check_request)


@blp.before_request
def only_with_the_simulator() -> None:
    why = simulator.off_because(settings())
    if why:
        abort(409, message=why)


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
        try:
            sid = simulator.say(settings(), **args)[1]
        except simulator.NotReceived as error:
            abort(502, message=error.message)
        return {"message_sid": sid, "webhook_status": 200}

    @blp.arguments(ConversationArgs, location="query")
    @blp.response(200, ConversationSchema)
    def get(self, args):
        """The conversation with one phone as its screen would show it."""
        phone = normalise_phone(args["phone"], settings().default_region)
        return {"phone": phone, "messages": simulator.conversation(request_session(), redis_client(), phone)}
