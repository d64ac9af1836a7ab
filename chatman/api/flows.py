"""/flows: conversation flows (ask, wait, validate, save, branch)."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.extensions import request_session
from chatman.flows import crud

blp = Blueprint("flows", __name__, url_prefix="/flows", description="Conversation flows")
blp.before_request(require_token)
blp.before_request(check_request)


class FlowSchema(ma.Schema):
    id = fields.Id(dump_only=True)
    name = fields.Text(required=True, min=1, max=200)
    steps = ma.fields.List(
        ma.fields.Dict(),
        required=True,
        metadata={"description": "ordered steps; see chatman/flows/definition.py for their fields"},
    )
    timeout_s = fields.Integer(
        load_default=24 * 3600,
        minimum=60,
        maximum=30 * 86400,
        metadata={"description": "idle time before it ends, 60 s to 30 days"},
    )
    timeout_message = fields.Text(allow_none=True, max=4096)
    on_trigger = fields.Text(
        load_default="ignore",
        validate=ma.validate.OneOf(("interrupt", "ignore")),
        metadata={
            "description": "a matching trigger during the flow: interrupt it, or take it as the answer"
        },
    )
    created_at = ma.fields.AwareDateTime(dump_only=True)
    updated_at = ma.fields.AwareDateTime(dump_only=True)


class FlowUpdateSchema(FlowSchema):
    steps = ma.fields.List(ma.fields.Dict())
    timeout_s = fields.Integer(minimum=60, maximum=30 * 86400)
    on_trigger = fields.Text(validate=ma.validate.OneOf(("interrupt", "ignore")))


@blp.route("")
class Flows(MethodView):
    @blp.response(200, FlowSchema(many=True))
    def get(self):
        return crud.list_flows(request_session())

    @blp.arguments(
        FlowSchema,
        example={
            "name": "signup",
            "steps": [{"id": "city", "type": "ask", "text": "Your city?", "save_to": "city"}],
        },
    )
    @blp.response(201, FlowSchema)
    def post(self, data):
        session = request_session()
        flow = crud.save_flow(session, data)
        session.commit()
        return flow


@blp.route("/<int:flow_id>")
class FlowById(MethodView):
    @blp.response(200, FlowSchema)
    def get(self, flow_id: int):
        return crud.get_flow(request_session(), flow_id)

    @blp.arguments(FlowUpdateSchema(partial=True))
    @blp.response(200, FlowSchema)
    def patch(self, data, flow_id: int):
        session = request_session()
        flow = crud.save_flow(session, data, flow_id)
        session.commit()
        return flow

    @blp.response(204)
    def delete(self, flow_id: int):
        session = request_session()
        crud.delete_flow(session, flow_id)
        session.commit()
