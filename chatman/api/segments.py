"""/segments: static and dynamic segments, preview, members."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict

import marshmallow as ma
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.api.contacts import ContactSchema, ImportFileSchema
from chatman.contacts import segments
from chatman.errors import Invalid
from chatman.extensions import request_session, settings

blp = Blueprint("segments", __name__, url_prefix="/segments", description="Audience segments")
blp.before_request(require_token)
blp.before_request(check_request)

RULES_HELP = (
    '{"all"|"any": [conditions or groups]}; a condition is {"field": "attributes.city" '
    'or a contact field, "op": "eq", "value": ...}'
)


class SegmentSchema(ma.Schema):
    id = fields.Id(dump_only=True)
    name = fields.Text(required=True, min=1, max=200)
    description = fields.Text(allow_none=True, max=1000)
    kind = fields.Text(load_default="static", validate=ma.validate.OneOf(["static", "dynamic"]))
    rules = ma.fields.Raw(allow_none=True, metadata={"description": RULES_HELP})
    include_segments = ma.fields.List(
        fields.Id(), metadata={"description": "segments whose members are added"}
    )
    exclude_segments = ma.fields.List(
        fields.Id(), metadata={"description": "segments whose members are removed"}
    )
    created_at = ma.fields.AwareDateTime(dump_only=True)
    updated_at = ma.fields.AwareDateTime(dump_only=True)


class SegmentUpdateSchema(SegmentSchema):
    kind = fields.Text(validate=ma.validate.OneOf(["static", "dynamic"]))


class PreviewArgs(ma.Schema):
    sample = fields.Integer(load_default=10, minimum=0, maximum=100, strict=False)


class RulesPreviewSchema(ma.Schema):
    rules = ma.fields.Raw(required=True, metadata={"description": RULES_HELP})
    sample = fields.Integer(load_default=10, minimum=0, maximum=100)


class PreviewSchema(ma.Schema):
    count = fields.Integer()
    sample = ma.fields.List(ma.fields.Nested(ContactSchema))


class MembersSchema(ma.Schema):
    contact_ids = ma.fields.List(fields.Id(), load_default=list)
    phones = ma.fields.List(fields.Text(max=64), load_default=list)

    @ma.validates_schema
    def _someone(self, data: dict, **_kwargs) -> None:
        if not data.get("contact_ids") and not data.get("phones"):
            raise ma.ValidationError("give contact_ids or phones (or both)", "contact_ids")


class MemberChangeSchema(ma.Schema):
    changed = fields.Integer(metadata={"description": "members added or removed"})
    not_found = ma.fields.List(ma.fields.Dict(), metadata={"description": "the first 1,000 misses"})
    not_found_count = fields.Integer(metadata={"description": "every contact id or phone not found"})


def _dump(segment) -> dict:
    links = segments.segment_links(request_session(), segment.id)
    return {
        "id": segment.id,
        "name": segment.name,
        "description": segment.description,
        "kind": segment.kind,
        "rules": segment.rules,
        "include_segments": links["include"],
        "exclude_segments": links["exclude"],
        "created_at": segment.created_at,
        "updated_at": segment.updated_at,
    }


@blp.route("")
class Segments(MethodView):
    @blp.response(200, SegmentSchema(many=True))
    def get(self):
        return [_dump(s) for s in segments.list_segments(request_session())]

    @blp.arguments(
        SegmentSchema,
        example={
            "name": "Pune",
            "kind": "dynamic",
            "rules": {"all": [{"field": "attributes.city", "op": "eq", "value": "Pune"}]},
        },
    )
    @blp.response(201, SegmentSchema)
    def post(self, data):
        """Create a segment: static (members) or dynamic (rules compiled to SQL)."""
        session = request_session()
        segment = segments.create_segment(session, data)
        session.commit()
        return _dump(segment)


@blp.route("/preview")
class RulesPreview(MethodView):
    @blp.arguments(
        RulesPreviewSchema,
        example={"rules": {"any": [{"field": "name", "op": "contains", "value": "a"}]}, "sample": 5},
    )
    @blp.response(200, PreviewSchema)
    def post(self, data):
        """Count and sample the contacts that unsaved rules would select."""
        count, sample = segments.preview_rules(request_session(), data["rules"], data["sample"])
        return {"count": count, "sample": sample}


@blp.route("/<int:segment_id>")
class SegmentById(MethodView):
    @blp.response(200, SegmentSchema)
    def get(self, segment_id: int):
        return _dump(segments.get_segment(request_session(), segment_id))

    @blp.arguments(SegmentUpdateSchema(partial=True))
    @blp.response(200, SegmentSchema)
    def patch(self, data, segment_id: int):
        session = request_session()
        segment = segments.update_segment(session, segment_id, data)
        session.commit()
        return _dump(segment)

    @blp.response(204)
    def delete(self, segment_id: int):
        session = request_session()
        segments.delete_segment(session, segment_id)
        session.commit()


@blp.route("/<int:segment_id>/preview")
class SegmentPreview(MethodView):
    @blp.arguments(PreviewArgs, location="query")
    @blp.response(200, PreviewSchema)
    def get(self, args, segment_id: int):
        """How many contacts the segment holds now, and a sample of them."""
        count, sample = segments.preview_segment(request_session(), segment_id, args["sample"])
        return {"count": count, "sample": sample}


def _change(segment_id: int, action: str, contact_ids: list[int], phones: list[tuple[int, str]]):
    """Phones come labelled: by list index from JSON, by CSV row number from a file."""
    session = request_session()
    result = segments.change_members(
        session, segment_id, action, contact_ids, phones, settings().default_region
    )
    session.commit()
    return asdict(result)


@blp.route("/<int:segment_id>/members")
class Members(MethodView):
    @blp.arguments(MembersSchema)
    @blp.response(200, MemberChangeSchema)
    def post(self, data, segment_id: int):
        """Add contacts to a static segment by id and/or phone."""
        return _change(segment_id, "add", data["contact_ids"], list(enumerate(data["phones"])))


@blp.route("/<int:segment_id>/members/remove")
class MembersRemove(MethodView):
    @blp.arguments(MembersSchema)
    @blp.response(200, MemberChangeSchema)
    def post(self, data, segment_id: int):
        """Remove contacts from a static segment by id and/or phone."""
        return _change(segment_id, "remove", data["contact_ids"], list(enumerate(data["phones"])))


@blp.route("/<int:segment_id>/members/import")
class MembersImport(MethodView):
    @blp.arguments(ImportFileSchema, location="files")
    @blp.response(200, MemberChangeSchema)
    def post(self, _files, segment_id: int):
        """Add the contacts listed in a CSV's phone column to a static segment."""
        text = io.TextIOWrapper(request.files["file"].stream, encoding="utf-8-sig", newline="")
        session = request_session()
        try:
            reader = csv.DictReader(text)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            if "phone" not in header:
                raise Invalid("file", "the CSV needs a column named phone")
            column = (reader.fieldnames or [])[header.index("phone")]
            # Read as it is added, a thousand rows at a time: the file is never held whole.
            phones = ((n, row[column] or "") for n, row in enumerate(reader, start=2))
            result = segments.add_members_streamed(session, segment_id, phones, settings().default_region)
        except UnicodeDecodeError:
            raise Invalid("file", "the file is not UTF-8 text") from None
        except csv.Error as error:
            raise Invalid("file", f"the file is not valid CSV: {error}") from None
        session.commit()
        return asdict(result)
