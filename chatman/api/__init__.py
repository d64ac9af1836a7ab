"""REST API under /api/v1 (flask-smorest): bearer-token auth, one JSON error shape."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from flask import Flask, request, send_from_directory
from flask_smorest import Api
from sqlalchemy.orm.exc import StaleDataError
from swagger_ui_bundle import swagger_ui_path
from werkzeug.exceptions import MethodNotAllowed

from chatman.errors import Conflict, DomainError, Invalid, NotFound

PREFIX = "/api/v1"
STATUS = {NotFound: 404, Conflict: 409, Invalid: 422}


def _flatten(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    if isinstance(errors, dict):
        flat: dict[str, list[str]] = {}
        for key, value in errors.items():
            # Body fields are named plainly; query and form fields keep their location.
            name = "" if key == "json" and not prefix else f"{prefix}.{key}" if prefix else str(key)
            flat.update(_flatten(value, name))
        return flat
    if isinstance(errors, list) and all(isinstance(e, str) for e in errors):
        return {prefix or "_": errors}
    if isinstance(errors, list):
        flat = {}
        for i, item in enumerate(errors):
            flat.update(_flatten(item, f"{prefix}[{i}]"))
        return flat
    return {prefix or "_": [str(errors)]}


class ErrorSchema(ma.Schema):
    """Every error the API answers, whatever refused the request."""

    code = ma.fields.Integer(required=True, metadata={"description": "the HTTP status"})
    message = ma.fields.String(required=True, metadata={"description": "what went wrong, in words"})
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.List(ma.fields.String()),
        required=True,
        metadata={"description": "field (or JSON path) -> reasons; empty when no one field is at fault"},
    )


class ChatmanApi(Api):
    ERROR_SCHEMA = ErrorSchema

    def handle_http_exception(self, error):
        payload, code, headers = super().handle_http_exception(error)
        errors = _flatten(payload["errors"]) if "errors" in payload else {}
        message = payload.get("message") or (
            "; ".join(f"{field}: {', '.join(reasons)}" for field, reasons in errors.items())
            if errors
            else error.description
        )
        headers = dict(headers or {})
        if isinstance(error, MethodNotAllowed) and error.valid_methods:
            headers["Allow"] = ", ".join(error.valid_methods)
        return {"code": code, "message": message, "errors": errors}, code, headers


def handle_deleted_meanwhile(_error: StaleDataError):
    """A change to a record that another request deleted between our read and our write."""
    names = [name for name, value in (request.view_args or {}).items() if isinstance(value, int)]
    reason = "was deleted meanwhile"
    return {"code": 404, "message": f"the record {reason}", "errors": {name: [reason] for name in names}}, 404


def handle_domain_error(error: DomainError):
    code = next((c for cls, c in STATUS.items() if isinstance(error, cls)), 400)
    return {"code": code, "message": error.message, "errors": error.errors}, code


def init_api(app: Flask) -> Api:
    from chatman.api import (
        campaigns,
        contacts,
        events,
        flows,
        outgoing_webhooks,
        reports,
        rules,
        segments,
        simulator,
        templates,
        triggers,
    )

    app.config.update(
        API_TITLE="Chatman API",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX=PREFIX,
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        # Served from the installed swagger-ui-bundle, so the docs work offline.
        OPENAPI_SWAGGER_UI_URL=f"{PREFIX}/docs/assets/",
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearerAuth": []}],
            "info": {
                "description": "Contacts, segments, templates, campaigns, triggers, flows and events. "
                "Send `Authorization: Bearer <token>`; create one with `flask tokens create NAME`."
            },
        },
    )
    api = ChatmanApi(app)
    for blueprint in (
        contacts.blp,
        segments.blp,
        templates.blp,
        campaigns.blp,
        triggers.blp,
        rules.blp,
        outgoing_webhooks.blp,
        reports.blp,
        flows.blp,
        events.blp,
        simulator.blp,
    ):
        api.register_blueprint(blueprint, url_prefix=f"{PREFIX}{blueprint.url_prefix or ''}")
    app.register_error_handler(DomainError, handle_domain_error)
    app.register_error_handler(StaleDataError, handle_deleted_meanwhile)

    @app.get(f"{PREFIX}/docs/assets/<path:filename>")
    def swagger_assets(filename: str):
        return send_from_directory(str(swagger_ui_path), filename)

    return api
