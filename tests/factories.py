"""Small builders of real rows."""

from __future__ import annotations

from itertools import count
from typing import Any

from sqlalchemy.orm import Session

from chatman.contacts.attributes import define_attribute
from chatman.contacts.crud import create_contact

_numbers = count(1)


def phone() -> str:
    """A fresh valid Indian mobile number."""
    return f"+9198{next(_numbers):08d}"


def make_contact(session: Session, **fields: Any):
    fields.setdefault("phone", phone())
    contact = create_contact(session, fields, default_region=None)
    session.commit()
    return contact


def define(session: Session, **types: str) -> None:
    for name, type_ in types.items():
        define_attribute(session, name, type_)
    session.commit()
