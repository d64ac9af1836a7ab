"""Contacts: search, a contact's page (attributes, segments, DND, messages), CSV import."""

from __future__ import annotations

import json
import logging

from flask import flash, jsonify, redirect, render_template, request, url_for
from redis.exceptions import RedisError

from chatman.admin.blueprint import bp, form_text
from chatman.contacts import crud, csv_import, imports, segments
from chatman.errors import Invalid
from chatman.extensions import redis_client, request_session, settings
from chatman.jobs import enqueue_import
from chatman.messaging import conversations
from chatman.timeutils import utcnow

log = logging.getLogger(__name__)
PREVIEW_BYTES = 64 * 1024


@bp.route("/contacts")
def contacts():
    q = (request.args.get("q") or "").strip()[:200]
    after = request.args.get("after", type=int)
    rows, next_after = crud.list_contacts(request_session(), q or None, after, 50)
    return render_template("admin/contacts.html", contacts=rows, q=q, next_after=next_after)


@bp.route("/contacts/<int:contact_id>")
def contact(contact_id: int):
    session = request_session()
    record = crud.get_contact(session, contact_id)
    return render_template(
        "admin/contact.html",
        contact=record,
        segments=segments.segments_of(session, contact_id),
        timeline=conversations.thread(session, contact_id, utcnow(), limit=100).entries,
    )


@bp.route("/contacts/<int:contact_id>/dnd", methods=["POST"])
def contact_dnd(contact_id: int):
    session = request_session()
    dnd = request.form.get("dnd") == "on"
    data = {"dnd": dnd, **({"dnd_reason": form_text("dnd_reason") or "set by a marketer"} if dnd else {})}
    crud.update_contact(session, contact_id, data, settings().default_region)
    session.commit()
    flash("DND is on: no campaign will message this contact." if dnd else "DND is off.")
    return redirect(url_for("admin.contact", contact_id=contact_id))


@bp.route("/contacts/import", methods=["GET", "POST"])
def contacts_import():
    if request.method == "GET":
        return render_template("admin/import.html", errors={})
    upload = request.files.get("file")
    errors: dict[str, list[str]] = {}
    if upload is None or not upload.filename:
        errors["file"] = ["choose a CSV file to import"]
    mapping = None
    try:
        mapping = json.loads(request.form.get("mapping") or "null")
    except ValueError:
        errors["mapping"] = ["the column mapping could not be read; choose the file again"]
    if mapping is not None and not isinstance(mapping, dict):
        errors["mapping"] = ["the column mapping could not be read; choose the file again"]
    if errors:
        return render_template("admin/import.html", errors=errors), 422
    session = request_session()
    config = settings()
    try:
        record = imports.create_import(
            session,
            upload.stream,
            upload.filename,
            mapping,
            config.import_max_new_attributes,
            config.max_attributes,
        )
    except Invalid as error:
        return render_template("admin/import.html", errors=error.errors), 422
    session.commit()
    try:
        enqueue_import(redis_client(), record.id)
    except RedisError:  # kept: the clock enqueues it once Redis answers again
        log.warning("import %s stored, its job not queued yet: Redis does not answer", record.id)
    return redirect(url_for("admin.contacts_import_status", import_id=record.id))


@bp.route("/contacts/import/preview", methods=["POST"])
def contacts_import_preview():
    """The header, first rows and planned columns of the start of a file the browser read."""
    start = request.files["file"].stream.read(PREVIEW_BYTES) if "file" in request.files else b""
    try:
        return jsonify(csv_import.preview(start))
    except Invalid as error:
        return jsonify(code=422, message=error.message, errors=error.errors), 422


def _import_state(record) -> dict:
    return {
        "status": record.status,
        "progress": imports.progress(record),
        "done": record.status in ("done", "failed"),
    }


@bp.route("/contacts/imports/<int:import_id>")
def contacts_import_status(import_id: int):
    record = imports.get_import(request_session(), import_id)
    return render_template("admin/import_status.html", record=record, state=_import_state(record))


@bp.route("/contacts/imports/<int:import_id>/progress.json")
def contacts_import_progress(import_id: int):
    return jsonify(_import_state(imports.get_import(request_session(), import_id)))
