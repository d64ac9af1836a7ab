"""/webhook-endpoints and /webhook-deliveries: where rules push events (a CRM), and the audit
of each delivery and its attempts."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.extensions import request_session, settings
from chatman.outgoing import endpoints

blp = Blueprint(
    "outgoing_webhooks", __name__, url_prefix="", description="Outgoing webhooks (Standard Webhooks signed)"
)
blp.before_request(require_token)
blp.before_request(check_request)


class EndpointSchema(ma.Schema):
    id = fields.Id(dump_only=True)
    name = fields.Text(required=True, min=1, max=200)
    url = fields.Text(
        required=True,
        min=1,
        max=2000,
        metadata={
            "description": "http:// or https://; a host on a private, loopback or link-local "
            "address is refused unless WEBHOOK_ALLOW_PRIVATE is set"
        },
    )
    enabled = fields.Boolean(
        load_default=True,
        metadata={
            "description": "false stops it and fails its pending deliveries; true revives one a 410 disabled"
        },
    )
    disabled_reason = fields.Text(dump_only=True, allow_none=True)
    disabled_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True)
    created_at = ma.fields.AwareDateTime(dump_only=True)
    updated_at = ma.fields.AwareDateTime(dump_only=True)


class EndpointWithSecretSchema(EndpointSchema):
    secret = ma.fields.String(
        dump_only=True,
        metadata={"description": "whsec_...: verify the webhook-signature header with it. Shown only here"},
    )


class EndpointUpdateSchema(EndpointSchema):
    name = fields.Text(min=1, max=200)
    url = fields.Text(min=1, max=2000)
    enabled = fields.Boolean()


class DeliverySchema(ma.Schema):
    id = fields.Id()
    endpoint_id = fields.Id()
    webhook_id = fields.Text(metadata={"description": "the webhook-id header, the same on every attempt"})
    event_type = fields.Text()
    payload = ma.fields.Dict()
    status = fields.Text(
        metadata={"description": "pending, delivered, or failed (given up, or endpoint off)"}
    )
    attempt_count = fields.Integer()
    next_attempt_at = ma.fields.AwareDateTime(allow_none=True)
    reason = fields.Text(allow_none=True, metadata={"description": "why it failed, or the last failure"})
    created_at = ma.fields.AwareDateTime()
    delivered_at = ma.fields.AwareDateTime(allow_none=True)


class AttemptSchema(ma.Schema):
    attempt = fields.Integer()
    attempted_at = ma.fields.AwareDateTime()
    status_code = fields.Integer(allow_none=True, metadata={"description": "None: no answer came"})
    duration_ms = fields.Integer()
    error = fields.Text(allow_none=True)


class DeliveryDetailSchema(DeliverySchema):
    attempts = ma.fields.List(ma.fields.Nested(AttemptSchema))


class DeliveryArgs(ma.Schema):
    after = fields.Id(
        load_default=0, minimum=0, strict=False, metadata={"description": "the last id of the previous page"}
    )
    limit = fields.Integer(load_default=100, minimum=1, maximum=1000, strict=False)
    status = fields.Text(validate=ma.validate.OneOf(endpoints.STATUSES))


@blp.route("/webhook-endpoints")
class Endpoints(MethodView):
    @blp.response(200, EndpointSchema(many=True))
    def get(self):
        return endpoints.list_endpoints(request_session())

    @blp.arguments(EndpointSchema, example={"name": "CRM", "url": "https://crm.example.com/hooks/chatman"})
    @blp.response(201, EndpointWithSecretSchema)
    def post(self, data):
        """Register an endpoint; the answer holds its signing secret, which is never shown again."""
        session = request_session()
        endpoint = endpoints.create_endpoint(session, data, settings().webhook_allow_private)
        session.commit()
        return endpoint


@blp.route("/webhook-endpoints/<int:endpoint_id>")
class EndpointById(MethodView):
    @blp.response(200, EndpointSchema)
    def get(self, endpoint_id: int):
        return endpoints.get_endpoint(request_session(), endpoint_id)

    @blp.arguments(EndpointUpdateSchema(partial=True))
    @blp.response(200, EndpointSchema)
    def patch(self, data, endpoint_id: int):
        """Change name, url or enabled; {"enabled": true} revives an endpoint a 410 disabled."""
        session = request_session()
        endpoint = endpoints.update_endpoint(session, endpoint_id, data, settings().webhook_allow_private)
        session.commit()
        return endpoint

    @blp.response(204)
    def delete(self, endpoint_id: int):
        """Delete an endpoint with its deliveries."""
        session = request_session()
        endpoints.delete_endpoint(session, endpoint_id)
        session.commit()


@blp.route("/webhook-endpoints/<int:endpoint_id>/rotate-secret")
class RotateSecret(MethodView):
    @blp.response(200, EndpointWithSecretSchema)
    def post(self, endpoint_id: int):
        """A new signing secret, shown once; the old one stops at once."""
        session = request_session()
        endpoint = endpoints.rotate_secret(session, endpoint_id)
        session.commit()
        return endpoint


@blp.route("/webhook-endpoints/<int:endpoint_id>/deliveries")
class EndpointDeliveries(MethodView):
    @blp.arguments(DeliveryArgs, location="query")
    @blp.response(200, DeliverySchema(many=True))
    def get(self, args, endpoint_id: int):
        """This endpoint's deliveries by id, a page at a time (`after` the last id seen)."""
        return endpoints.list_deliveries(
            request_session(),
            endpoint_id,
            after=args["after"],
            limit=args["limit"],
            status=args.get("status"),
        )


@blp.route("/webhook-deliveries/<int:delivery_id>")
class DeliveryById(MethodView):
    @blp.response(200, DeliveryDetailSchema)
    def get(self, delivery_id: int):
        """A delivery with every attempt: when, the HTTP status (or none), how long, what failed."""
        return endpoints.get_delivery(request_session(), delivery_id)
