"""/contacts, /contacts/import and /attributes."""

from __future__ import annotations

import json
from dataclasses import asdict

import marshmallow as ma
from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api.auth import require_token
from chatman.contacts import attributes, crud
from chatman.contacts.csv_import import import_contacts
from chatman.errors import Invalid
from chatman.extensions import request_session, settings
from chatman.messaging.erasure import erase_contact

blp = Blueprint("contacts", __name__, url_prefix="/", description="Contacts and their attributes")
blp.before_request(require_token)

AttributeValue = ma.fields.Raw(metadata={"description": "string, number, boolean or YYYY-MM-DD"})


class ContactSchema(ma.Schema):
    id = ma.fields.Integer(dump_only=True)
    phone = ma.fields.String(metadata={"description": "E.164, e.g. +919812345678"})
    wa_id = ma.fields.String(allow_none=True)
    name = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=200))
    attributes = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Raw(allow_none=True))
    timezone = ma.fields.String(allow_none=True, metadata={"description": "IANA name"})
    dnd = ma.fields.Boolean()
    dnd_reason = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=64))
    dnd_at = ma.fields.AwareDateTime(dump_only=True)
    opted_in_at = ma.fields.AwareDateTime(allow_none=True)
    opt_in_source = ma.fields.String(allow_none=True, validate=ma.validate.Length(max=64))
    last_inbound_at = ma.fields.AwareDateTime(dump_only=True)
    created_at = ma.fields.AwareDateTime(dump_only=True)
    updated_at = ma.fields.AwareDateTime(dump_only=True)


class ContactCreateSchema(ContactSchema):
    phone = ma.fields.String(required=True)


class ContactUpdateSchema(ContactSchema):
    pass


class ContactPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(ContactSchema))
    next_after = ma.fields.Integer(
        allow_none=True, metadata={"description": "pass as `after` for the next page"}
    )


class ContactListArgs(ma.Schema):
    q = ma.fields.String(metadata={"description": "search in name and phone"})
    after = ma.fields.Integer(validate=ma.validate.Range(min=0))
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=crud.MAX_PAGE))


class ImportFormSchema(ma.Schema):
    mapping = ma.fields.String(
        metadata={
            "description": "JSON object column -> target: phone, name, timezone, wa_id, "
            'attributes.<name>, or null to skip; e.g. {"Mobile": "phone"}'
        }
    )


class ImportFileSchema(ma.Schema):
    file = ma.fields.Raw(metadata={"type": "string", "format": "binary"}, required=True)


class RowErrorSchema(ma.Schema):
    row = ma.fields.Integer()
    column = ma.fields.String(allow_none=True)
    value = ma.fields.String(allow_none=True)
    reason = ma.fields.String()


class ImportReportSchema(ma.Schema):
    rows = ma.fields.Integer()
    created = ma.fields.Integer()
    updated = ma.fields.Integer()
    merged = ma.fields.Integer()
    failed = ma.fields.Integer()
    errors = ma.fields.List(ma.fields.Nested(RowErrorSchema))
    errors_truncated = ma.fields.Boolean()
    new_attributes = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.String())


class AttributeSchema(ma.Schema):
    name = ma.fields.String(required=True)
    type = ma.fields.String(
        required=True, validate=ma.validate.OneOf(["string", "number", "boolean", "date"])
    )


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

    @blp.arguments(ContactCreateSchema)
    @blp.response(201, ContactSchema)
    def post(self, data):
        """Create a contact; the phone is stored in E.164."""
        session = request_session()
        contact = crud.create_contact(session, data, settings().default_region)
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
        contact = crud.update_contact(session, contact_id, data, settings().default_region)
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


@blp.route("/contacts/import")
class ContactImport(MethodView):
    @blp.arguments(ImportFormSchema, location="form")
    @blp.arguments(ImportFileSchema, location="files")
    @blp.response(200, ImportReportSchema)
    def post(self, form, files):
        """Upsert contacts from a UTF-8 CSV upload; returns a per-row error report."""
        mapping = None
        if form.get("mapping"):
            try:
                mapping = json.loads(form["mapping"])
            except ValueError:
                raise Invalid("mapping", "must be a JSON object") from None
            if not isinstance(mapping, dict) or not all(isinstance(v, str | None) for v in mapping.values()):
                raise Invalid("mapping", "must be a JSON object of column -> target (or null)")
        upload = request.files["file"]
        report = import_contacts(
            request_session(),
            upload.stream,
            default_region=settings().default_region,
            mapping=mapping,
            batch_size=settings().import_batch_size,
        )
        return asdict(report)


@blp.route("/attributes")
class Attributes(MethodView):
    @blp.response(200, AttributeSchema(many=True))
    def get(self):
        """Custom attributes and their types."""
        return attributes.list_definitions(request_session())

    @blp.arguments(AttributeSchema)
    @blp.response(201, AttributeSchema)
    def post(self, data):
        """Declare an attribute's type before values arrive (e.g. a date)."""
        session = request_session()
        definition = attributes.define_attribute(session, data["name"], data["type"])
        session.commit()
        return definition
