"""Revision counters for cached things (e.g. the trigger set).

A change bumps the counter in its own transaction; a process holding a cached copy compares
one primary-key read with the revision it built from, and rebuilds only when they differ.
"""

from __future__ import annotations

import secrets

from sqlalchemy import BigInteger, String, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from chatman.db import Base
from chatman.dialects import insert_ignore


class Revision(Base):
    __tablename__ = "revisions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


def current(session: Session, name: str) -> int:
    return session.scalar(select(Revision.value).where(Revision.name == name)) or 0


def bump(session: Session, name: str) -> None:
    """A fresh random value, not +1: a database emptied and refilled (tests, a restore) must
    not meet a cache built from an earlier state with the same number."""
    value = secrets.randbits(62)
    insert_ignore(session, Revision, [{"name": name, "value": value}], ["name"])
    session.execute(update(Revision).where(Revision.name == name).values(value=value))
