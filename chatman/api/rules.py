"""/rules: post-campaign rules (POST /campaigns/{id}/rules creates one), and their firings."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.extensions import request_session
from chatman.rules import crud
from chatman.rules.engine import dry_run

blp = Blueprint("rules", __name__, url_prefix="", description="Post-campaign rules")
blp.before_request(require_token)
blp.before_request(check_request)


class RuleSchema(ma.Schema):
    id = fields.Id(dump_only=True)
    campaign_id = fields.Id(dump_only=True)
    step_id = fields.Id(allow_none=True, metadata={"description": "only this step's messages (a drip's)"})
    name = fields.Text(required=True, min=1, max=200)
    enabled = fields.Boolean(load_default=True)
    condition = ma.fields.Dict(
        required=True,
        metadata={
            "description": '{"status": "sent|delivered|read|failed", "error_codes": [...]}, '
            '{"replied": true}, {"tapped": "button"}, combined with {"all": [...]} or {"any": [...]}'
        },
    )
    actions = ma.fields.List(
        ma.fields.Dict(),
        required=True,
        metadata={
            "description": "in order: set_attribute (attribute, value), unset_attribute, "
            "increment_attribute (attribute, by), add_to_segment / remove_from_segment "
            "(segment_id, static), set_dnd (reason), clear_dnd"
        },
    )
    created_at = ma.fields.AwareDateTime(dump_only=True)
    updated_at = ma.fields.AwareDateTime(dump_only=True)


class RuleUpdateSchema(RuleSchema):
    name = fields.Text(min=1, max=200)
    enabled = fields.Boolean()
    condition = ma.fields.Dict()
    actions = ma.fields.List(ma.fields.Dict())


class FiringSchema(ma.Schema):
    id = fields.Id()
    rule_id = fields.Id()
    message_id = fields.Id()
    contact_id = fields.Id(allow_none=True)
    event = fields.Text(metadata={"description": "what the message had done: its status, replied, tapped"})
    status = fields.Text(metadata={"description": "done, or failed when an action failed"})
    outcomes = ma.fields.List(ma.fields.Dict(), metadata={"description": "each action: type, status, reason"})
    fired_at = ma.fields.AwareDateTime()


class FiringArgs(ma.Schema):
    after = fields.Id(load_default=0, metadata={"description": "the last id of the previous page"})
    limit = fields.Integer(load_default=100, validate=ma.validate.Range(min=1, max=1000))


@blp.route("/campaigns/<int:campaign_id>/rules")
class CampaignRules(MethodView):
    @blp.response(200, RuleSchema(many=True))
    def get(self, campaign_id: int):
        return crud.list_rules(request_session(), campaign_id)

    @blp.arguments(
        RuleSchema,
        example={
            "name": "Not interested",
            "condition": {"tapped": "Not interested"},
            "actions": [{"type": "remove_from_segment", "segment_id": 1}],
        },
    )
    @blp.response(201, RuleSchema)
    def post(self, data, campaign_id: int):
        session = request_session()
        rule = crud.create_rule(session, campaign_id, data)
        session.commit()
        return rule


@blp.route("/rules/<int:rule_id>")
class RuleById(MethodView):
    @blp.response(200, RuleSchema)
    def get(self, rule_id: int):
        return crud.get_rule(request_session(), rule_id)

    @blp.arguments(RuleUpdateSchema(partial=True))
    @blp.response(200, RuleSchema)
    def patch(self, data, rule_id: int):
        """Change a rule; {"enabled": false} turns it off."""
        session = request_session()
        rule = crud.update_rule(session, rule_id, data)
        session.commit()
        return rule

    @blp.response(204)
    def delete(self, rule_id: int):
        session = request_session()
        crud.delete_rule(session, rule_id)
        session.commit()


class DryRunSampleSchema(ma.Schema):
    contact_id = fields.Id()
    message_id = fields.Id()


class DryRunSchema(ma.Schema):
    would_fire = fields.Integer(metadata={"description": "messages the rule would fire for now"})
    fired_before = fields.Integer(metadata={"description": "messages it already fired for (never again)"})
    sample = ma.fields.List(ma.fields.Nested(DryRunSampleSchema), metadata={"description": "the first 100"})


@blp.route("/rules/<int:rule_id>/dry-run")
class RuleDryRun(MethodView):
    @blp.response(200, DryRunSchema)
    def post(self, rule_id: int):
        """Who this rule would fire for if it ran now (enabled or not); changes nothing."""
        session = request_session()
        result = dry_run(session, crud.get_rule(session, rule_id))
        session.rollback()
        return {
            "would_fire": result.would_fire,
            "fired_before": result.fired_before,
            "sample": [{"contact_id": c, "message_id": m} for c, m in result.sample],
        }


@blp.route("/rules/<int:rule_id>/firings")
class RuleFirings(MethodView):
    @blp.arguments(FiringArgs, location="query")
    @blp.response(200, FiringSchema(many=True))
    def get(self, args, rule_id: int):
        """Who this rule fired for, when, on what, and what each action did."""
        return crud.list_firings(request_session(), rule_id=rule_id, after=args["after"], limit=args["limit"])


@blp.route("/contacts/<int:contact_id>/firings")
class ContactFirings(MethodView):
    @blp.arguments(FiringArgs, location="query")
    @blp.response(200, FiringSchema(many=True))
    def get(self, args, contact_id: int):
        """The rules that fired for this contact."""
        return crud.list_firings(
            request_session(), contact_id=contact_id, after=args["after"], limit=args["limit"]
        )
