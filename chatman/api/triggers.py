"""/triggers: inbound intent triggers, and /triggers/match to try a message against them."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.extensions import request_session
from chatman.timeutils import utcnow
from chatman.triggers import crud
from chatman.triggers.models import ACTIONS, MATCH_TYPES

blp = Blueprint("triggers", __name__, url_prefix="/triggers", description="Inbound triggers")
blp.before_request(require_token)
blp.before_request(check_request)


class TriggerSchema(ma.Schema):
    id = fields.Id(dump_only=True)
    name = fields.Text(required=True, min=1, max=200)
    match_type = fields.Text(
        validate=ma.validate.OneOf(MATCH_TYPES),
        metadata={
            "description": "exact, keyword (whole words), starts_with, contains, regex (RE2), fuzzy, button"
        },
    )
    patterns = ma.fields.List(fields.Text(min=1, max=500), load_default=list)
    threshold = fields.Float(
        allow_none=True,
        validate=ma.validate.Range(min=1, max=100, error="{input} is out of range: between 1 and 100"),
        metadata={"description": "fuzzy: lowest score 1-100"},
    )
    priority = fields.Integer(load_default=0, metadata={"description": "higher wins"})
    active_from = fields.Text(allow_none=True, max=5, metadata={"description": "HH:MM local time"})
    active_until = fields.Text(allow_none=True, max=5, metadata={"description": "HH:MM local time"})
    timezone = fields.Text(
        allow_none=True, max=64, metadata={"description": "IANA name for the active hours"}
    )
    cooldown_s = fields.Integer(load_default=0, minimum=0, metadata={"description": "per contact, seconds"})
    action = fields.Text(required=True, validate=ma.validate.OneOf(ACTIONS))
    reply_body = fields.Text(
        allow_none=True, max=4096, metadata={"description": "reply: free text, {{name}} etc."}
    )
    reply_template_id = fields.Id(
        allow_none=True, metadata={"description": "reply: approved template, used outside the 24-hour window"}
    )
    campaign_id = fields.Id(allow_none=True, metadata={"description": "enroll: a triggered campaign"})
    flow_id = fields.Id(allow_none=True, metadata={"description": "flow: the flow to start"})
    is_fallback = fields.Boolean(load_default=False, metadata={"description": "answers what nothing matched"})
    enabled = fields.Boolean(load_default=True)
    created_at = ma.fields.AwareDateTime(dump_only=True)
    updated_at = ma.fields.AwareDateTime(dump_only=True)


class TriggerUpdateSchema(TriggerSchema):
    action = fields.Text(validate=ma.validate.OneOf(ACTIONS))
    patterns = ma.fields.List(fields.Text(min=1, max=500))
    priority = fields.Integer()
    cooldown_s = fields.Integer(minimum=0)
    is_fallback = fields.Boolean()
    enabled = fields.Boolean()


class MatchArgs(ma.Schema):
    text = fields.Text(load_default=None, max=4096)
    button_payload = fields.Text(load_default=None, max=256)

    @ma.validates_schema
    def _something(self, data: dict, **_kwargs) -> None:
        if not data.get("text") and not data.get("button_payload"):
            raise ma.ValidationError("give the text of a message, or a button_payload", "text")


class MatchSchema(ma.Schema):
    trigger_id = fields.Id(allow_none=True)
    fallback = fields.Boolean()
    candidates = ma.fields.List(ma.fields.Dict(), metadata={"description": "every match, best first"})


@blp.route("")
class Triggers(MethodView):
    @blp.response(200, TriggerSchema(many=True))
    def get(self):
        return crud.list_triggers(request_session())

    @blp.arguments(
        TriggerSchema,
        example={
            "name": "hours",
            "match_type": "keyword",
            "patterns": ["hours", "open"],
            "action": "reply",
            "reply_body": "We open at 10.",
        },
    )
    @blp.response(201, TriggerSchema)
    def post(self, data):
        session = request_session()
        trigger = crud.save_trigger(session, data)
        session.commit()
        return trigger


@blp.route("/<int:trigger_id>")
class TriggerById(MethodView):
    @blp.response(200, TriggerSchema)
    def get(self, trigger_id: int):
        return crud.get_trigger(request_session(), trigger_id)

    @blp.arguments(TriggerUpdateSchema(partial=True))
    @blp.response(200, TriggerSchema)
    def patch(self, data, trigger_id: int):
        session = request_session()
        trigger = crud.save_trigger(session, data, trigger_id)
        session.commit()
        return trigger

    @blp.response(204)
    def delete(self, trigger_id: int):
        session = request_session()
        crud.delete_trigger(session, trigger_id)
        session.commit()


@blp.route("/match")
class Match(MethodView):
    @blp.arguments(MatchArgs)
    @blp.response(200, MatchSchema)
    def post(self, args):
        """Which trigger a message would fire now (ignoring cooldowns): for testing triggers."""
        match = crud.match_message(request_session(), args["text"], args["button_payload"], utcnow())
        return {
            "trigger_id": match.trigger_id,
            "fallback": match.fallback,
            "candidates": [
                {"trigger_id": c.trigger.id, "score": round(c.score, 1)}
                for c in match.candidates
                if c.trigger.id in match.active
            ],
        }
