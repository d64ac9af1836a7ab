"""/events: external events that start triggered campaigns for one contact."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.extensions import redis_client, request_session, settings
from chatman.jobs import enqueue_sends
from chatman.triggers.events import record_event

blp = Blueprint("events", __name__, url_prefix="/events", description="External events")
blp.before_request(require_token)
blp.before_request(check_request)


class ContactRefSchema(ma.Schema):
    id = fields.Id()
    phone = fields.Text(max=64)


class EventSchema(ma.Schema):
    event = fields.Text(
        required=True, min=1, max=100, metadata={"description": "e.g. order_created, cart_abandoned"}
    )
    contact = ma.fields.Nested(ContactRefSchema, required=True, metadata={"description": "phone or id"})
    properties = ma.fields.Dict(
        load_default=dict, metadata={"description": 'usable by templates as {"event": "<property>"}'}
    )
    event_id = fields.Text(
        min=1,
        max=128,
        metadata={"description": "your id of this event: sending it again starts nothing again"},
    )


class EventResultSchema(ma.Schema):
    event_id = fields.Text()
    contact_id = fields.Id()
    duplicate = fields.Boolean(metadata={"description": "this event id was received before"})
    campaigns = ma.fields.List(fields.Id(), metadata={"description": "campaigns it started"})
    message = fields.Text(metadata={"description": "what happened, in words"})


@blp.route("")
class Events(MethodView):
    @blp.arguments(
        EventSchema,
        example={
            "event": "order_created",
            "contact": {"phone": "+919812345679"},
            "properties": {"order_id": "1001"},
        },
    )
    @blp.response(202, EventResultSchema)
    def post(self, data):
        """Record an event; every running triggered campaign subscribed to it sends to the
        contact (a phone not known yet becomes a contact)."""
        session = request_session()
        outcome = record_event(
            session,
            data["event"],
            data["contact"],
            data["properties"],
            data.get("event_id"),
            default_region=settings().default_region,
        )
        session.commit()
        enqueue_sends(redis_client(), [], list(outcome.started.values()))
        return {
            "message": _said(data["event"], outcome),
            "event_id": outcome.event_id,
            "contact_id": outcome.contact_id,
            "duplicate": outcome.duplicate,
            "campaigns": sorted(outcome.started),
        }


def _said(name: str, outcome) -> str:
    if outcome.duplicate:
        return f"event id {outcome.event_id} was received before: nothing started again"
    if not outcome.listening:
        return (
            f"no running triggered or drip campaign listens for {name!r}: nothing was sent "
            "(create one with kind triggered and this trigger_event, then launch it)"
        )
    started = len(outcome.started)
    return (
        f"{started} of {len(outcome.listening)} campaign(s) listening for {name!r} started for this contact"
    )
