"""The admin blueprint and what its views share: a login on every route, CSRF on every
request that changes something, error pages, and helpers to read forms and show errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import marshmallow as ma
from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from chatman.admin.security import secure_headers
from chatman.errors import Conflict, DomainError, Invalid, NotFound

bp = Blueprint("admin", __name__, url_prefix="/admin", template_folder="templates")
# Stylesheets and scripts, outside /admin: they hold no data, and the login page needs them.
assets = Blueprint("admin_assets", __name__, static_folder="static", static_url_path="/static/admin")
# Set up once, here: the blueprints are registered on every app created (one per test backend).
bp.after_request(secure_headers)
assets.after_request(secure_headers)
csrf = CSRFProtect()
PUBLIC_ENDPOINTS = {"admin.login"}


@bp.before_request
def require_login():
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
    csrf.protect()  # GET/HEAD/OPTIONS pass; every other method needs the token
    return None


def viewer_zone() -> str:
    """The marketer's timezone, as their browser reported it (admin.js sets the cookie)."""
    name = request.cookies.get("tz", "")
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, ZoneInfoNotFoundError):
        return "UTC"
    return name


@bp.app_template_filter("zip_pairs")
def zip_pairs(values) -> list[tuple[str, str]]:
    """Options whose value is also their text."""
    return [(str(v), str(v).replace("_", " ")) for v in values]


def wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json" or request.is_json


def _error_page(code: int, title: str, message: str, errors: Mapping[str, list[str]] | None = None):
    if wants_json():
        return jsonify(code=code, message=message, errors=dict(errors or {})), code
    return render_template("admin/error.html", code=code, title=title, message=message), code


@bp.errorhandler(CSRFError)
def csrf_refused(error: CSRFError):
    return _error_page(
        400, "The form expired", f"{error.description} Go back, reload the page and try again."
    )


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException):
    return _error_page(error.code or 500, error.name, error.description or "")


@bp.errorhandler(DomainError)
def domain_error(error: DomainError):
    code = 404 if isinstance(error, NotFound) else 409 if isinstance(error, Conflict) else 422
    return _error_page(code, "That did not work", error.message, error.errors)


@bp.route("/<path:_rest>")
def unknown(_rest: str):
    return _error_page(404, "Not found", "There is no such page in the admin.")


def form_text(name: str) -> str | None:
    """A text field, stripped; None when it was left empty."""
    value = (request.form.get(name) or "").strip()
    return value or None


def form_ints(name: str) -> list[int]:
    return [int(v) for v in request.form.getlist(name) if v.strip().isdigit()]


def schema_errors(error: ma.ValidationError) -> dict[str, list[str]]:
    """marshmallow's nested messages as field -> reasons, the shape Invalid carries."""

    def flatten(messages: Any, prefix: str) -> dict[str, list[str]]:
        if isinstance(messages, dict):
            out: dict[str, list[str]] = {}
            for key, value in messages.items():
                out |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
            return out
        if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
            return {prefix or "_": messages}
        return {prefix or "_": [str(messages)]}

    return flatten(error.messages, "")


def load(schema: ma.Schema, data: Mapping[str, Any]) -> dict[str, Any]:
    """Data checked by the API's own schema, so the admin and the API accept the same input;
    a refusal becomes an Invalid naming each field."""
    try:
        return schema.load(data)
    except ma.ValidationError as error:
        raise Invalid.many(schema_errors(error)) from None
