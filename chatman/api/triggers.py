"""/triggers: inbound intent triggers, /triggers/match to try a message against them, and
/triggers/unmatched with /triggers/<id>/examples to teach them what customers really write."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.errors import Invalid, NotFound
from chatman.extensions import request_session, settings
from chatman.messaging.models import InboundMessage
from chatman.timeutils import utcnow
from chatman.triggers import crud
from chatman.triggers.inbound import inbound_policy
from chatman.triggers.intents import DEFAULT_EXAMPLE_THRESHOLD
from chatman.triggers.models import ACTIONS, MATCH_TYPES

EXAMPLE_LENGTH = crud.MAX_EXAMPLE_LENGTH
blp = Blueprint("triggers", __name__, url_prefix="/triggers", description="Inbound triggers")
blp.before_request(require_token)
blp.before_request(check_request)


class TriggerSchema(ma.Schema):
    id = fields.Id(dump_only=True)
    name = fields.Text(required=True, min=1, max=200)
    match_type = fields.Text(
        validate=ma.validate.OneOf(MATCH_TYPES),
        metadata={
            "description": "exact, keyword (whole words), starts_with, contains, regex (RE2), fuzzy, "
            "button, or examples (example phrases alone: the match type when it is left out and only "
            "examples are given)"
        },
    )
    patterns = ma.fields.List(fields.Text(min=1, max=500), load_default=list)
    examples = ma.fields.List(
        fields.Text(min=1, max=EXAMPLE_LENGTH),
        load_default=list,
        metadata={
            "description": f'up to {crud.MAX_EXAMPLES} ways customers say it ("where is my order", '
            '"order kab aayega"), matched by similarity in any wording, clause by clause; any '
            "trigger but the fallback may have them"
        },
    )
    example_threshold = fields.Float(
        allow_none=True,
        validate=ma.validate.Range(min=1, max=100, error="{input} is out of range: between 1 and 100"),
        metadata={
            "description": "lowest similarity 1-100 to an example phrase that counts; "
            f"{DEFAULT_EXAMPLE_THRESHOLD:g} when null"
        },
    )
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
    examples = ma.fields.List(
        fields.Text(min=1, max=EXAMPLE_LENGTH), metadata={"description": "replaces every example phrase"}
    )
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


STAGE = "how it matched: its match type, or examples (by an example phrase)"
PHRASE = "examples: the example phrase that came closest"
CLAUSE = "examples: the part of the message it matched (normalised)"


class CandidateSchema(ma.Schema):
    trigger_id = fields.Id()
    score = fields.Float(metadata={"description": "0-100"})
    stage = fields.Text(metadata={"description": STAGE})
    phrase = fields.Text(allow_none=True, metadata={"description": PHRASE})
    clause = fields.Text(allow_none=True, metadata={"description": CLAUSE})


class OptSchema(ma.Schema):
    kind = fields.Text(
        allow_none=True,
        metadata={
            "description": "opt_out (the contact would be opted out), opt_out_prompt (asked to reply "
            "STOP), opt_in, or null; on opt_out and opt_out_prompt no trigger answers"
        },
    )
    by_word = fields.Boolean(
        metadata={
            "description": "an opt word or the opt-out button; false: by resemblance, and an opt-in "
            "by resemblance only asks the contact to reply START"
        }
    )
    score = fields.Float(metadata={"description": "0-100; 100 for an opt-out word or button"})
    phrase = fields.Text(
        allow_none=True, metadata={"description": "the opt word or phrase it came closest to"}
    )


class MatchSchema(ma.Schema):
    trigger_id = fields.Id(allow_none=True)
    fallback = fields.Boolean()
    stage = fields.Text(allow_none=True, metadata={"description": f"the answering trigger's: {STAGE}"})
    phrase = fields.Text(allow_none=True, metadata={"description": PHRASE})
    clause = fields.Text(allow_none=True, metadata={"description": CLAUSE})
    score = fields.Float(allow_none=True, metadata={"description": "the answering trigger's, 0-100"})
    opt = ma.fields.Nested(OptSchema, metadata={"description": "opting out or in, judged first"})
    candidates = ma.fields.List(
        ma.fields.Nested(CandidateSchema), metadata={"description": "every match, best first"}
    )


class UnmatchedArgs(ma.Schema):
    limit = fields.Integer(load_default=50, minimum=1, maximum=200, strict=False)
    before_id = fields.Id(strict=False, metadata={"description": "the last inbound_id of the page before"})


class NearestSchema(ma.Schema):
    trigger_id = fields.Id()
    name = fields.Text()
    score = fields.Float(metadata={"description": "similarity 0-100, below the trigger's threshold"})
    phrase = fields.Text(metadata={"description": "its example phrase that came closest"})


class UnmatchedSchema(ma.Schema):
    inbound_id = fields.Id()
    body = fields.Text()
    received_at = ma.fields.AwareDateTime()
    handled_by = fields.Text(allow_none=True, metadata={"description": "fallback, or null: nothing answered"})
    nearest = ma.fields.List(
        ma.fields.Nested(NearestSchema),
        metadata={"description": "the triggers whose example phrases came closest, best first"},
    )


class ExampleArgs(ma.Schema):
    text = fields.Text(min=1, max=EXAMPLE_LENGTH, metadata={"description": "the phrase to add"})
    inbound_id = fields.Id(metadata={"description": "or a message's id: its text is added"})

    @ma.validates_schema
    def _one(self, data: dict, **_kwargs) -> None:
        if ("text" in data) == ("inbound_id" in data):
            raise ma.ValidationError("give either text or inbound_id (one of them)", "text")


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
    @blp.arguments(MatchArgs, example={"text": "mera order kab aayega?"})
    @blp.response(200, MatchSchema)
    def post(self, args):
        """Which trigger a message would fire now (ignoring cooldowns): for testing triggers.

        An opt-out (a word like STOP, the opt-out button, or a message that says it in other
        words) is judged first: then `opt.kind` is opt_out or opt_out_prompt and no trigger
        answers. `stage`, `phrase`, `clause` and `score` are the answering trigger's match
        (null when none, or when the fallback answers); `candidates` are the matches within
        their active hours, best first."""
        match = crud.match_message(
            request_session(),
            args["text"],
            args["button_payload"],
            utcnow(),
            inbound_policy(settings()).words,
        )
        active = [c for c in match.candidates if c.trigger.id in match.active]
        winner = next((c for c in active if c.trigger.id == match.trigger_id), None)
        return {
            "trigger_id": match.trigger_id,
            "fallback": match.fallback,
            "stage": winner.how if winner else None,
            "phrase": winner.phrase if winner else None,
            "clause": winner.clause if winner else None,
            "score": round(winner.score, 1) if winner else None,
            "opt": {
                "kind": match.opt.kind,
                "score": round(match.opt.score, 1),
                "phrase": match.opt.phrase,
                "by_word": match.opt.by_word,
            },
            "candidates": [
                {
                    "trigger_id": c.trigger.id,
                    "score": round(c.score, 1),
                    "stage": c.how,
                    "phrase": c.phrase,
                    "clause": c.clause,
                }
                for c in active
            ],
        }


@blp.route("/unmatched")
class Unmatched(MethodView):
    @blp.arguments(UnmatchedArgs, location="query")
    @blp.response(200, UnmatchedSchema(many=True))
    def get(self, args):
        """What customers wrote that no trigger answered (the fallback did, or nothing), newest
        first, each with the triggers that came nearest: phrases worth adding as examples. The
        next page: `before_id` = the last `inbound_id`."""
        session = request_session()
        found = crud.unmatched_messages(session, args["limit"], args.get("before_id"))
        names = {t.id: t.name for t in crud.list_triggers(session)} if found else {}
        return [
            {
                "inbound_id": u.message.id,
                "body": u.message.body,
                "received_at": u.message.received_at,
                "handled_by": u.message.handled_by,
                "nearest": [
                    {
                        "trigger_id": h.owner,
                        "name": names.get(h.owner),
                        "score": round(h.score, 1),
                        "phrase": h.phrase,
                    }
                    for h in u.nearest
                ],
            }
            for u in found
        ]


@blp.route("/<int:trigger_id>/examples")
class Examples(MethodView):
    @blp.arguments(ExampleArgs, example={"inbound_id": 1})
    @blp.response(200, TriggerSchema)
    def post(self, args, trigger_id: int):
        """Add one example phrase to a trigger: `text`, or the text of an inbound message
        (`inbound_id`, from /triggers/unmatched). A phrase it already has is not added twice."""
        session = request_session()
        crud.get_trigger(session, trigger_id)
        phrase = args["text"] if "text" in args else _inbound_text(session, args["inbound_id"])
        trigger = crud.add_example(session, trigger_id, phrase)
        session.commit()
        return trigger


def _inbound_text(session, inbound_id: int) -> str:
    message = session.get(InboundMessage, inbound_id)
    if message is None:
        raise NotFound(f"inbound message {inbound_id} not found", {"inbound_id": ["not found"]})
    if not (message.body or "").strip():
        raise Invalid("inbound_id", f"message {inbound_id} has no text (a button, media or location)")
    if len(message.body.strip()) > EXAMPLE_LENGTH:
        raise Invalid("inbound_id", f"message {inbound_id} is longer than {EXAMPLE_LENGTH} characters")
    return message.body
