"""/templates"""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.extensions import request_session
from chatman.messaging import templates
from chatman.messaging.models import TEMPLATE_CATEGORIES, TEMPLATE_STATUSES

blp = Blueprint("templates", __name__, url_prefix="/templates", description="WhatsApp message templates")
blp.before_request(require_token)
blp.before_request(check_request)


class TemplateSchema(ma.Schema):
    id = fields.Id(dump_only=True)
    name = fields.Text(required=True, min=1, max=200)
    language = fields.Text(required=True, min=2, max=16)
    category = fields.Text(required=True, validate=ma.validate.OneOf(TEMPLATE_CATEGORIES))
    body = fields.Text(required=True, min=1, max=1024, metadata={"description": "text with {{placeholders}}"})
    content_sid = fields.Text(allow_none=True, max=64, metadata={"description": "Twilio ContentSid (HX...)"})
    buttons = ma.fields.List(ma.fields.Dict(), load_default=list)
    variables = ma.fields.Dict(
        keys=fields.Text(),
        values=ma.fields.Dict(),
        load_default=dict,
        metadata={
            "description": 'placeholder -> {"field": "name"} | {"attribute": "city"} | {"value": "text"}'
        },
    )
    status = fields.Text(load_default="draft", validate=ma.validate.OneOf(TEMPLATE_STATUSES))
    created_at = ma.fields.AwareDateTime(dump_only=True)
    updated_at = ma.fields.AwareDateTime(dump_only=True)


class TemplateUpdateSchema(TemplateSchema):
    status = fields.Text(validate=ma.validate.OneOf(TEMPLATE_STATUSES))


@blp.route("")
class Templates(MethodView):
    @blp.response(200, TemplateSchema(many=True))
    def get(self):
        return templates.list_templates(request_session())

    @blp.arguments(
        TemplateSchema,
        example={
            "name": "offer",
            "language": "en",
            "category": "marketing",
            "status": "approved",
            "body": "Hi {{first}}",
            "variables": {"first": {"field": "name"}},
        },
    )
    @blp.response(201, TemplateSchema)
    def post(self, data):
        session = request_session()
        template = templates.save_template(session, data)
        session.commit()
        return template


@blp.route("/<int:template_id>")
class TemplateById(MethodView):
    @blp.response(200, TemplateSchema)
    def get(self, template_id: int):
        return templates.get_template(request_session(), template_id)

    @blp.arguments(TemplateUpdateSchema(partial=True))
    @blp.response(200, TemplateSchema)
    def patch(self, data, template_id: int):
        session = request_session()
        template = templates.save_template(session, data, template_id)
        session.commit()
        return template
