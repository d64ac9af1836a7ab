"""Custom attribute definitions: each attribute name has one type, fixed once declared."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatman.contacts.fields import (
    coerce_attribute,
    infer_attribute_type,
    validate_attribute_name,
)
from chatman.contacts.models import ATTRIBUTE_TYPES, AttributeDefinition
from chatman.errors import Conflict, Invalid

# How many attributes an install may define (the MAX_ATTRIBUTES setting), so that a file or a
# request with a column or key per customer cannot define thousands.
MAX_ATTRIBUTES = 500


def attribute_types(session: Session) -> dict[str, str]:
    return dict(session.execute(select(AttributeDefinition.name, AttributeDefinition.type)).all())


def list_definitions(session: Session) -> list[AttributeDefinition]:
    return list(session.scalars(select(AttributeDefinition).order_by(AttributeDefinition.name)))


def define_attribute(
    session: Session, name: str, type_: str, max_total: int = MAX_ATTRIBUTES
) -> AttributeDefinition:
    """The definition of `name`, declared now when new (refused past `max_total` in all)."""
    validate_attribute_name(name, "name")
    if type_ not in ATTRIBUTE_TYPES:
        raise Invalid("type", f"unknown attribute type {type_!r}; one of {', '.join(ATTRIBUTE_TYPES)}")
    existing = session.scalar(select(AttributeDefinition).where(AttributeDefinition.name == name))
    if existing is not None:
        if existing.type != type_:
            raise Conflict(f"attribute {name!r} is already defined as {existing.type}")
        return existing
    if session.scalar(select(func.count()).select_from(AttributeDefinition)) >= max_total:
        raise Invalid(
            "name",
            f"{name!r} would be attribute {max_total + 1}; an install holds at most "
            f"{max_total} (MAX_ATTRIBUTES)",
        )
    definition = AttributeDefinition(name=name, type=type_)
    session.add(definition)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"attribute {name!r} was defined at the same time; retry") from None
    return definition


def prepare_attributes(
    session: Session,
    values: Mapping[str, Any],
    types: dict[str, str],
    field: str = "attributes",
    max_total: int = MAX_ATTRIBUTES,
) -> dict[str, Any]:
    """Check `values` against the declared types, declaring unseen names from their value.

    `types` is the caller's cache of definitions and is updated in place. A None value is
    kept as None so that a patch can remove the attribute.
    """
    prepared: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for name, value in values.items():
        path = f"{field}.{name}"
        try:
            validate_attribute_name(name, path)
            if value is None:
                prepared[name] = None
                continue
            type_ = types.get(name)
            if type_ is None:
                try:
                    type_ = infer_attribute_type(value)
                except TypeError:
                    raise Invalid(path, "attribute values are strings, numbers, booleans or dates") from None
                define_attribute(session, name, type_, max_total)
                types[name] = type_
            prepared[name] = coerce_attribute(value, type_, path)
        except Invalid as exc:
            errors.update(exc.errors)
    if errors:
        raise Invalid.many(errors)
    return prepared
