"""Message templates: the list with approval status, an editor with its variables and a
preview rendered for a real contact by the one placeholder renderer."""

from __future__ import annotations

from flask import flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select

from chatman.admin.blueprint import bp, form_text, load
from chatman.api.templates import TemplateSchema, TemplateUpdateSchema
from chatman.contacts.models import Contact
from chatman.errors import Conflict, Invalid
from chatman.extensions import request_session
from chatman.messaging import rendering, templates
from chatman.messaging.models import TEMPLATE_CATEGORIES, TEMPLATE_STATUSES

SOURCES = (
    ("field", "a contact field"),
    ("attribute", "an attribute"),
    ("value", "fixed text"),
    ("event", "the event"),
)


def _buttons(text: str) -> list[dict[str, str]]:
    """One quick-reply button a line: `Title` or `Title | payload`."""
    buttons = []
    for line in text.splitlines():
        title, _, payload = line.partition("|")
        if title.strip():
            buttons.append(
                {
                    "id": (payload.strip() or title.strip()).upper().replace(" ", "_")[:256],
                    "title": title.strip(),
                }
            )
    return buttons


def _variables(body: str) -> dict[str, dict[str, str]]:
    variables = {}
    for name in rendering.placeholders(body):
        kind = request.form.get(f"var_kind.{name}") or "attribute"
        key = (request.form.get(f"var_key.{name}") or "").strip()
        variables[name] = {kind: key or name}
    return variables


def _form_data() -> dict:
    body = request.form.get("body") or ""
    return {
        "name": form_text("name"),
        "language": form_text("language") or "en",
        "category": request.form.get("category") or "marketing",
        "body": body,
        "content_sid": form_text("content_sid"),
        "status": request.form.get("status") or "draft",
        "buttons": _buttons(request.form.get("buttons") or ""),
        "variables": _variables(body),
    }


def _editor(template=None, values=None, errors=None, status=200):
    if values is None and template is not None:
        values = {c: getattr(template, c) for c in templates.FIELDS}
    values = values or {
        "language": "en",
        "category": "marketing",
        "status": "draft",
        "variables": {},
        "buttons": [],
    }
    return (
        render_template(
            "admin/template_edit.html",
            template=template,
            values=values,
            errors=errors or {},
            categories=[(c, c) for c in TEMPLATE_CATEGORIES],
            statuses=[(s, s) for s in TEMPLATE_STATUSES],
            sources=SOURCES,
            fields=rendering.CONTACT_FIELDS,
        ),
        status,
    )


# Endpoint "templates" (the nav's name); the function is named apart from the module it calls.
@bp.route("/templates", endpoint="templates")
def templates_list():
    return render_template("admin/templates.html", templates=templates.list_templates(request_session()))


@bp.route("/templates/new", methods=["GET", "POST"])
def template_new():
    if request.method == "GET":
        return _editor()
    session = request_session()
    data = _form_data()
    try:
        template = templates.save_template(session, load(TemplateSchema(), data))
    except (Invalid, Conflict) as error:
        session.rollback()
        return _editor(values=data, errors=error.errors, status=422)
    session.commit()
    flash(f"Template {template.name} saved.")
    return redirect(url_for("admin.templates"))


@bp.route("/templates/<int:template_id>", methods=["GET", "POST"])
def template_edit(template_id: int):
    session = request_session()
    template = templates.get_template(session, template_id)
    if request.method == "GET":
        return _editor(template)
    data = _form_data()
    try:
        templates.save_template(session, load(TemplateUpdateSchema(), data), template_id)
    except (Invalid, Conflict) as error:
        session.rollback()
        return _editor(
            templates.get_template(session, template_id), values=data, errors=error.errors, status=422
        )
    session.commit()
    flash("Template saved.")
    return redirect(url_for("admin.templates"))


@bp.route("/templates/preview", methods=["POST"])
def template_preview():
    """The body as the first contact would get it; placeholders without a value show as
    [name], so a marketer sees what is missing."""
    body = request.get_json(silent=True) or {}
    text, variables = str(body.get("body") or "")[:1024], body.get("variables") or {}
    contact = request_session().scalar(select(Contact).order_by(Contact.id).limit(1))
    values: dict[str, str] = {}
    for name in rendering.placeholders(text):
        source = variables.get(name) if isinstance(variables, dict) else None
        try:
            if (
                not isinstance(source, dict)
                or len(source) != 1
                or (contact is None and "value" not in source)
            ):
                raise rendering.MissingVariable(name)
            values |= rendering.resolve({name: source}, contact)
        except (rendering.MissingVariable, AttributeError):
            values[name] = f"[{name}]"
    return jsonify(
        text=rendering.render(text, values), contact=(contact.name or contact.phone) if contact else None
    )
