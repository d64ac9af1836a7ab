"""Segments: the list, a rule builder with a live count and sample, a segment's page."""

from __future__ import annotations

import json

from flask import flash, jsonify, redirect, render_template, request, url_for

from chatman.admin.blueprint import bp, form_ints, form_text, load
from chatman.api.segments import SegmentSchema, SegmentUpdateSchema
from chatman.contacts import segments as domain
from chatman.contacts.attributes import attribute_types
from chatman.contacts.segment_rules import BUILTIN_FIELDS, OPERATOR_TYPES
from chatman.errors import Conflict, Invalid
from chatman.extensions import request_session

# The fields a marketer picks from; internal ones (ids, update times) stay out of the way.
PICKABLE = (
    "name",
    "phone",
    "timezone",
    "dnd",
    "dnd_reason",
    "opted_in_at",
    "opt_in_source",
    "last_inbound_at",
    "created_at",
)


def _fields(session) -> dict[str, str]:
    return {
        **{f: BUILTIN_FIELDS[f] for f in PICKABLE},
        **{f"attributes.{n}": t for n, t in attribute_types(session).items()},
    }


def _form_data() -> dict:
    data = {
        "name": form_text("name"),
        "description": form_text("description"),
        "kind": request.form.get("kind", "dynamic"),
        "include_segments": form_ints("include_segments"),
        "exclude_segments": form_ints("exclude_segments"),
    }
    data = {k: v for k, v in data.items() if v is not None}
    if data.get("kind") == "dynamic":
        try:
            data["rules"] = json.loads(request.form.get("rules") or "null")
        except ValueError:
            raise Invalid("rules", "the rules could not be read") from None
    return data


def _editor(segment=None, values=None, errors=None, status=200):
    session = request_session()
    others = [s for s in domain.list_segments(session) if segment is None or s.id != segment.id]
    values = values or {}
    if segment is not None and not values:
        values = {
            "name": segment.name,
            "description": segment.description,
            "kind": segment.kind,
            "rules": segment.rules,
            **domain.segment_links(session, segment.id),
        }
    return (
        render_template(
            "admin/segment_edit.html",
            segment=segment,
            values=values,
            errors=errors or {},
            others=others,
            fields=_fields(session),
            operators={op: sorted(types) for op, types in OPERATOR_TYPES.items()},
        ),
        status,
    )


@bp.route("/segments")
def segments():
    session = request_session()
    rows = domain.list_segments(session)
    return render_template(
        "admin/segments.html", segments=rows, counts={s.id: domain.member_count(session, s.id) for s in rows}
    )


@bp.route("/segments/new", methods=["GET", "POST"])
def segment_new():
    if request.method == "GET":
        return _editor(values={"kind": "dynamic", "rules": None})
    session = request_session()
    data = {}
    try:
        data = _form_data()
        segment = domain.create_segment(session, load(SegmentSchema(), data))
    except (Invalid, Conflict) as error:
        session.rollback()
        return _editor(values=data or request.form, errors=error.errors, status=422)
    session.commit()
    flash(f"Segment {segment.name} saved.")
    return redirect(url_for("admin.segment", segment_id=segment.id))


@bp.route("/segments/<int:segment_id>/edit", methods=["GET", "POST"])
def segment_edit(segment_id: int):
    session = request_session()
    segment = domain.get_segment(session, segment_id)
    if request.method == "GET":
        return _editor(segment)
    data = {}
    try:
        data = _form_data()
        data.pop("kind", None)
        domain.update_segment(session, segment_id, load(SegmentUpdateSchema(partial=True), data))
    except (Invalid, Conflict) as error:
        session.rollback()
        return _editor(segment, values={**data, "kind": segment.kind}, errors=error.errors, status=422)
    session.commit()
    flash("Segment saved.")
    return redirect(url_for("admin.segment", segment_id=segment_id))


@bp.route("/segments/<int:segment_id>")
def segment(segment_id: int):
    session = request_session()
    record = domain.get_segment(session, segment_id)
    count, sample = domain.preview_segment(session, segment_id, sample_size=20)
    return render_template("admin/segment.html", segment=record, count=count, sample=sample)


@bp.route("/segments/<int:segment_id>/delete", methods=["POST"])
def segment_delete(segment_id: int):
    session = request_session()
    domain.delete_segment(session, segment_id)
    session.commit()
    flash("Segment deleted.")
    return redirect(url_for("admin.segments"))


@bp.route("/segments/preview", methods=["POST"])
def segment_preview():
    """How many contacts rules hold now, and a few of them: the builder's live count."""
    body = request.get_json(silent=True) or {}
    try:
        count, sample = domain.preview_rules(request_session(), body.get("rules"), sample_size=5)
    except Invalid as error:
        return jsonify(code=422, message=error.message, errors=error.errors), 422
    return jsonify(count=count, sample=[{"name": c.name, "phone": c.phone} for c in sample])
