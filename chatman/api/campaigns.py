"""/campaigns: one-time broadcasts and their counters."""

from __future__ import annotations

from collections import Counter

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api.auth import require_token
from chatman.campaigns import lifecycle
from chatman.extensions import redis_client, request_session
from chatman.jobs import enqueue_dispatch
from chatman.ledger.counters import stored

blp = Blueprint("campaigns", __name__, url_prefix="/campaigns", description="Campaigns")
blp.before_request(require_token)


class CampaignSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=200))
    kind = ma.fields.String(dump_only=True)
    status = ma.fields.String(dump_only=True)
    owner = ma.fields.String(allow_none=True)
    utm_campaign = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=100))
    template_id = ma.fields.Integer(allow_none=True)
    body = ma.fields.String(allow_none=True, metadata={"description": "free text (24-hour window only)"})
    include_segments = ma.fields.List(ma.fields.Integer(), load_default=list)
    exclude_segments = ma.fields.List(ma.fields.Integer(), load_default=list)
    send_at = ma.fields.AwareDateTime(dump_only=True)
    timezone = ma.fields.String(dump_only=True)
    counters = ma.fields.Dict(dump_only=True, metadata={"description": "metric -> count over all runs"})


class CampaignUpdateSchema(CampaignSchema):
    include_segments = ma.fields.List(ma.fields.Integer())
    exclude_segments = ma.fields.List(ma.fields.Integer())


class ScheduleSchema(ma.Schema):
    send_at = ma.fields.NaiveDateTime(required=True, metadata={"description": "wall-clock time in timezone"})
    timezone = ma.fields.String(required=True, metadata={"description": "IANA name, e.g. Asia/Kolkata"})


def _dump(campaign) -> dict:
    session = request_session()
    step = lifecycle.campaign_step(session, campaign.id)
    links = lifecycle.campaign_segments(session, campaign.id)
    totals: Counter[str] = Counter()
    for (_, _, _, metric), value in stored(session, campaign.id).items():
        totals[metric] += value
    return {
        "id": campaign.id,
        "name": campaign.name,
        "kind": campaign.kind,
        "status": campaign.status,
        "owner": campaign.owner,
        "utm_campaign": campaign.utm_campaign,
        "template_id": step.template_id,
        "body": step.body,
        "include_segments": links["include"],
        "exclude_segments": links["exclude"],
        "send_at": campaign.send_at,
        "timezone": campaign.timezone,
        "counters": dict(totals),
    }


@blp.route("")
class Campaigns(MethodView):
    @blp.arguments(CampaignSchema)
    @blp.response(201, CampaignSchema)
    def post(self, data):
        session = request_session()
        campaign = lifecycle.create_campaign(session, data)
        session.commit()
        return _dump(campaign)


@blp.route("/<int:campaign_id>")
class CampaignById(MethodView):
    @blp.response(200, CampaignSchema)
    def get(self, campaign_id: int):
        return _dump(lifecycle.get_campaign(request_session(), campaign_id))

    @blp.arguments(CampaignUpdateSchema(partial=True))
    @blp.response(200, CampaignSchema)
    def patch(self, data, campaign_id: int):
        session = request_session()
        campaign = lifecycle.update_campaign(session, campaign_id, data)
        session.commit()
        return _dump(campaign)


@blp.route("/<int:campaign_id>/launch")
class Launch(MethodView):
    @blp.response(202, CampaignSchema)
    def post(self, campaign_id: int):
        """Send now: freeze the audience and start sending in the background."""
        session = request_session()
        run = lifecycle.launch(session, campaign_id)
        session.commit()
        enqueue_dispatch(redis_client(), run.id)
        return _dump(lifecycle.get_campaign(session, campaign_id))


@blp.route("/<int:campaign_id>/schedule")
class Schedule(MethodView):
    @blp.arguments(ScheduleSchema)
    @blp.response(200, CampaignSchema)
    def post(self, data, campaign_id: int):
        """Send at a wall-clock time in a named timezone (stored in UTC)."""
        session = request_session()
        campaign = lifecycle.schedule(session, campaign_id, data["send_at"], data["timezone"])
        session.commit()
        return _dump(campaign)


def _action(action: str):
    def post(self, campaign_id: int):
        session = request_session()
        campaign = lifecycle.set_status(session, campaign_id, action)
        session.commit()
        if action == "resume":  # batches that met the pause put their rows back to pending
            for run_id in lifecycle.active_runs(session, campaign_id):
                enqueue_dispatch(redis_client(), run_id)
        return _dump(campaign)

    post.__doc__ = f"{action.capitalize()} the campaign."
    return type(action.capitalize(), (MethodView,), {"post": blp.response(200, CampaignSchema)(post)})


for _name in ("pause", "resume", "cancel"):
    blp.route(f"/<int:campaign_id>/{_name}")(_action(_name))
