"""/contacts, /contacts/import and /attributes."""

from __future__ import annotations

import json
import logging

import marshmallow as ma
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from redis.exceptions import RedisError

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.campaigns import EnrollmentListArgs, EnrollmentPageSchema, enrollment_page
from chatman.api.checks import check_request
from chatman.contacts import attributes, crud, imports
from chatman.errors import Invalid
from chatman.extensions import redis_client, request_session, settings
from chatman.jobs import enqueue_import
from chatman.messaging.erasure import erase_contact

log = logging.getLogger(__name__)
blp = Blueprint("contacts", __name__, url_prefix="/", description="Contacts and their attributes")
blp.before_request(require_token)
blp.before_request(check_request)

AttributeValue = ma.fields.Raw(metadata={"description": "string, number, boolean or YYYY-MM-DD"})


class ContactSchema(ma.Schema):
    id = fields.Id(dump_only=True)
    phone = fields.Text(max=64, metadata={"description": "E.164, e.g. +919812345678"})
    wa_id = fields.Text(allow_none=True, max=32)
    name = fields.Text(allow_none=True, max=200)
    attributes = ma.fields.Dict(keys=fields.Text(min=1, max=64), values=ma.fields.Raw(allow_none=True))
    timezone = fields.Text(allow_none=True, max=64, metadata={"description": "IANA name"})
    dnd = fields.Boolean()
    dnd_reason = fields.Text(allow_none=True, max=64)
    dnd_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True)
    opted_in_at = fields.Moment(allow_none=True)
    opt_in_source = fields.Text(allow_none=True, max=64)
    last_inbound_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True)
    created_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True)
    updated_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True)


class ContactCreateSchema(ContactSchema):
    phone = fields.Text(required=True, max=64, metadata={"description": "E.164, e.g. +919812345678"})


class ContactUpdateSchema(ContactSchema):
    pass


class ContactPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ContactSchema))
    next_after = fields.Id(allow_none=True, metadata={"description": "pass as `after` for the next page"})


class ContactListArgs(ma.Schema):
    q = fields.Text(max=200, metadata={"description": "search in name and phone"})
    after = fields.Id(minimum=0, strict=False)
    limit = fields.Integer(load_default=50, minimum=1, maximum=crud.MAX_PAGE, strict=False)


class ImportFileSchema(ma.Schema):
    file = ma.fields.Raw(metadata={"type": "string", "format": "binary"}, required=True)


class ContactUploadSchema(ImportFileSchema):
    # A form field of the same multipart body; read from the form (webargs' "files" has files).
    mapping = fields.Text(
        max=100_000,
        metadata={
            "description": "JSON object column -> target: phone, name, timezone, wa_id, "
            'attributes.<name>, or null to skip; e.g. {"Mobile": "phone"}'
        },
    )


class RowErrorSchema(ma.Schema):
    row = fields.Integer()
    column = fields.Text(allow_none=True)
    value = fields.Text(allow_none=True)
    reason = fields.Text()


class ImportReportSchema(ma.Schema):
    rows = fields.Integer()
    created = fields.Integer()
    updated = fields.Integer()
    merged = fields.Integer()
    failed = fields.Integer()
    errors = ma.fields.List(ma.fields.Nested(RowErrorSchema))
    errors_truncated = fields.Boolean()
    new_attributes = ma.fields.Dict(keys=fields.Text(), values=fields.Text())


class ImportSchema(ma.Schema):
    id = fields.Id()
    status = fields.Text(metadata={"description": "queued, running, done or failed"})
    filename = fields.Text(allow_none=True)
    size_bytes = fields.Integer(minimum=0, maximum=2**62)
    bytes_read = fields.Integer(minimum=0, maximum=2**62, metadata={"description": "how far it got"})
    progress = ma.fields.Float(metadata={"description": "0 to 1"})
    report = ma.fields.Nested(ImportReportSchema, allow_none=True, metadata={"description": "once done"})
    error = ma.fields.Dict(allow_none=True, metadata={"description": "why the file was refused"})
    created_at = ma.fields.AwareDateTime()
    started_at = ma.fields.AwareDateTime(allow_none=True)
    finished_at = ma.fields.AwareDateTime(allow_none=True)


def _import(record) -> dict:
    return {
        "id": record.id,
        "status": record.status,
        "filename": record.filename,
        "size_bytes": record.size_bytes or 0,
        "bytes_read": record.bytes_read,
        "progress": imports.progress(record),
        "report": record.report,
        "error": record.error,
        "created_at": record.created_at,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
    }


class AttributeSchema(ma.Schema):
    name = fields.Text(required=True, min=1, max=64)
    type = fields.Text(required=True, validate=ma.validate.OneOf(["string", "number", "boolean", "date"]))


@blp.route("/contacts")
class Contacts(MethodView):
    @blp.arguments(ContactListArgs, location="query")
    @blp.response(200, ContactPageSchema)
    def get(self, args):
        """List contacts in id order, keyset-paginated."""
        items, next_after = crud.list_contacts(
            request_session(), args.get("q"), args.get("after"), args["limit"]
        )
        return {"items": items, "next_after": next_after}

    @blp.arguments(
        ContactCreateSchema,
        example={
            "phone": "+919812345678",
            "name": "Asha",
            "timezone": "Asia/Kolkata",
            "attributes": {"city": "Pune"},
        },
    )
    @blp.response(201, ContactSchema)
    def post(self, data):
        """Create a contact; the phone is stored in E.164."""
        session = request_session()
        contact = crud.create_contact(
            session, data, settings().default_region, max_attributes=settings().max_attributes
        )
        session.commit()
        return contact


@blp.route("/contacts/<int:contact_id>")
class ContactById(MethodView):
    @blp.response(200, ContactSchema)
    def get(self, contact_id: int):
        return crud.get_contact(request_session(), contact_id)

    @blp.arguments(ContactUpdateSchema(partial=True))
    @blp.response(200, ContactSchema)
    def patch(self, data, contact_id: int):
        """Change fields; attributes are merged, and an attribute set to null is removed."""
        session = request_session()
        contact = crud.update_contact(
            session, contact_id, data, settings().default_region, max_attributes=settings().max_attributes
        )
        session.commit()
        return contact

    @blp.response(204)
    def delete(self, contact_id: int):
        """Erase the contact: their details, what they wrote, flow answers and memberships go;
        the messages we sent them stay in the ledger without a contact, so campaign figures
        do not change."""
        session = request_session()
        erase_contact(session, contact_id)
        session.commit()


@blp.route("/contacts/<int:contact_id>/enrollments")
class ContactEnrollments(MethodView):
    @blp.arguments(EnrollmentListArgs, location="query")
    @blp.response(200, EnrollmentPageSchema)
    def get(self, args, contact_id: int):
        """The drips and date campaigns this contact is in, and where they are in each."""
        crud.get_contact(request_session(), contact_id)
        return enrollment_page(args, contact_id=contact_id)


@blp.route("/contacts/import")
class ContactImport(MethodView):
    @blp.arguments(ContactUploadSchema, location="files")
    @blp.response(202, ImportSchema)
    def post(self, _files):
        """Upsert contacts from a UTF-8 CSV upload, in the background: the answer (and its
        Location) is the import to follow at GET /contacts/imports/{id}, whose report lists
        the rows refused and why once it is done."""
        mapping = None
        if request.form.get("mapping"):
            try:
                mapping = json.loads(request.form["mapping"])
            except (ValueError, RecursionError):
                raise Invalid("mapping", "must be a JSON object") from None
            if not isinstance(mapping, dict) or not all(isinstance(v, str | None) for v in mapping.values()):
                raise Invalid("mapping", "must be a JSON object of column -> target (or null)")
        upload = request.files["file"]
        session = request_session()
        record = imports.create_import(
            session,
            upload.stream,
            upload.filename,
            mapping,
            settings().import_max_new_attributes,
            settings().max_attributes,
        )
        session.commit()
        try:
            enqueue_import(redis_client(), record.id)
        except RedisError:  # it is kept: the clock enqueues it once Redis answers again
            log.warning("import %s stored, its job not queued yet: Redis does not answer", record.id)
        return (
            _import(record),
            202,
            {"Location": f"{request.script_root}/api/v1/contacts/imports/{record.id}"},
        )


@blp.route("/contacts/imports/<int:import_id>")
class ContactImportById(MethodView):
    @blp.response(200, ImportSchema)
    def get(self, import_id: int):
        """An import's progress, and its report once done (or why the file was refused)."""
        return _import(imports.get_import(request_session(), import_id))


@blp.route("/attributes")
class Attributes(MethodView):
    @blp.response(200, AttributeSchema(many=True))
    def get(self):
        """Custom attributes and their types."""
        return attributes.list_definitions(request_session())

    @blp.arguments(AttributeSchema, example={"name": "renewal_date", "type": "date"})
    @blp.response(201, AttributeSchema)
    def post(self, data):
        """Declare an attribute's type before values arrive (e.g. a date)."""
        session = request_session()
        definition = attributes.define_attribute(
            session, data["name"], data["type"], settings().max_attributes
        )
        session.commit()
        return definition
