"""Templates: create, change, list; placeholders checked against their variable sources."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatman.errors import Conflict, Invalid, NotFound
from chatman.messaging.models import TEMPLATE_CATEGORIES, TEMPLATE_STATUSES, Template
from chatman.messaging.rendering import validate_variables

FIELDS = ("name", "language", "category", "body", "content_sid", "buttons", "variables", "status")


def get_template(session: Session, template_id: int) -> Template:
    template = session.get(Template, template_id)
    if template is None:
        raise NotFound(f"template {template_id} not found")
    return template


def list_templates(session: Session) -> list[Template]:
    return list(session.scalars(select(Template).order_by(Template.id)))


def _check(template: Template) -> None:
    if template.category not in TEMPLATE_CATEGORIES:
        raise Invalid("category", f"one of {', '.join(TEMPLATE_CATEGORIES)}")
    if template.status not in TEMPLATE_STATUSES:
        raise Invalid("status", f"one of {', '.join(TEMPLATE_STATUSES)}")
    if not template.body or not template.body.strip():
        raise Invalid("body", "a template needs a body")
    validate_variables(template.body, template.variables or {})


def save_template(session: Session, data: Mapping[str, Any], template_id: int | None = None) -> Template:
    template = get_template(session, template_id) if template_id else Template(buttons=[], variables={})
    for key in FIELDS:
        if key in data:
            setattr(template, key, data[key])
    template.status = template.status or "draft"
    _check(template)
    session.add(template)
    name = f"{template.name!r} in {template.language!r}"  # read now: a failed flush expires them
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"a template {name} already exists", {"name": [f"{name} is taken"]}) from None
    return template
