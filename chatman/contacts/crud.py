"""Create, read, update, delete and list contacts."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatman.contacts.attributes import MAX_ATTRIBUTES, attribute_types, prepare_attributes
from chatman.contacts.fields import normalise_phone, validate_timezone
from chatman.contacts.models import Contact
from chatman.errors import Conflict, Invalid, NotFound
from chatman.timeutils import utcnow

EDITABLE = {
    "phone",
    "wa_id",
    "name",
    "timezone",
    "attributes",
    "dnd",
    "dnd_reason",
    "opted_in_at",
    "opt_in_source",
}
MAX_PAGE = 500


def get_contact(session: Session, contact_id: int) -> Contact:
    contact = session.get(Contact, contact_id)
    if contact is None:
        raise NotFound(f"contact {contact_id} not found")
    return contact


def find_by_phone(session: Session, phone: str) -> Contact | None:
    return session.scalar(select(Contact).where(Contact.phone == phone))


def _apply(
    session: Session,
    contact: Contact,
    data: Mapping[str, Any],
    default_region: str | None,
    now: datetime,
    max_attributes: int = MAX_ATTRIBUTES,
) -> None:
    unknown = set(data) - EDITABLE
    if unknown:
        raise Invalid(sorted(unknown)[0], "unknown field")
    errors: dict[str, list[str]] = {}

    def check(fn, *args):
        try:
            return fn(*args)
        except Invalid as exc:
            errors.update(exc.errors)
            return None

    if "phone" in data:
        phone = check(normalise_phone, data["phone"], default_region)
        if phone is not None and phone != contact.phone:
            other = find_by_phone(session, phone)
            if other is not None:
                raise Conflict(f"contact {other.id} already has phone {phone}")
            contact.phone = phone
    if "timezone" in data:
        contact.timezone = (
            check(validate_timezone, data["timezone"]) if data["timezone"] is not None else None
        )
    for key in ("name", "wa_id", "opt_in_source", "opted_in_at"):
        if key in data:
            setattr(contact, key, data[key])
    if "attributes" in data:
        prepared = check(
            prepare_attributes,
            session,
            data["attributes"],
            attribute_types(session),
            "attributes",
            max_attributes,
        )
        if prepared is not None:
            merged = dict(contact.attributes or {})
            for name, value in prepared.items():
                if value is None:
                    merged.pop(name, None)
                else:
                    merged[name] = value
            contact.attributes = merged
    if "dnd" in data and bool(data["dnd"]) != bool(contact.dnd):
        contact.dnd = bool(data["dnd"])
        contact.dnd_at = now if contact.dnd else None
        contact.dnd_reason = (data.get("dnd_reason") or "manual") if contact.dnd else None
    elif "dnd_reason" in data and contact.dnd:
        contact.dnd_reason = data["dnd_reason"] or "manual"
    if errors:
        raise Invalid.many(errors)


def create_contact(
    session: Session,
    data: Mapping[str, Any],
    default_region: str | None,
    now: datetime | None = None,
    max_attributes: int = MAX_ATTRIBUTES,
) -> Contact:
    if not data.get("phone"):
        raise Invalid("phone", "phone number is required")
    now = now or utcnow()
    contact = Contact(phone="", attributes={}, dnd=False, created_at=now, updated_at=now)
    _apply(session, contact, data, default_region, now, max_attributes)
    session.add(contact)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise _phone_taken(contact.phone) from None
    return contact


def update_contact(
    session: Session,
    contact_id: int,
    data: Mapping[str, Any],
    default_region: str | None,
    now: datetime | None = None,
    max_attributes: int = MAX_ATTRIBUTES,
) -> Contact:
    contact = get_contact(session, contact_id)
    _apply(session, contact, data, default_region, now or utcnow(), max_attributes)
    phone = contact.phone  # read now: a failed flush expires it
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise _phone_taken(phone) from None
    return contact


def _phone_taken(phone: str) -> Conflict:
    return Conflict(f"a contact with phone {phone} already exists", {"phone": [f"{phone} is taken"]})


def delete_contact(session: Session, contact_id: int) -> None:
    result = session.execute(delete(Contact).where(Contact.id == contact_id))
    if result.rowcount == 0:
        raise NotFound(f"contact {contact_id} not found")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_contacts(
    session: Session,
    search: str | None = None,
    after: int | None = None,
    limit: int = 50,
) -> tuple[list[Contact], int | None]:
    """One page of contacts in id order, and the cursor of the next page (None at the end)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(Contact).order_by(Contact.id).limit(limit + 1)
    if after is not None:
        query = query.where(Contact.id > after)
    if search:
        pattern = f"%{_like_escape(search.strip())}%"
        digits = "".join(ch for ch in search if ch.isdigit())
        clauses = [Contact.name.ilike(pattern, escape="\\")]
        if digits:
            clauses.append(Contact.phone.like(f"%{digits}%"))
        query = query.where(or_(*clauses))
    rows = list(session.scalars(query))
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None
