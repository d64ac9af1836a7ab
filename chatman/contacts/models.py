"""Tables of the contacts package: contacts, attribute definitions, segments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from chatman.db import Base, Id, Json, UTCDateTime
from chatman.timeutils import utcnow

ATTRIBUTE_TYPES = ("string", "number", "boolean", "date")
SEGMENT_KINDS = ("static", "dynamic")


class Contact(Base):
    __tablename__ = "contacts"

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    phone: Mapped[str] = mapped_column(String(20), unique=True)
    wa_id: Mapped[str | None] = mapped_column(String(32))
    name: Mapped[str | None] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]] = mapped_column(Json, default=dict)
    timezone: Mapped[str | None] = mapped_column(String(64))
    dnd: Mapped[bool] = mapped_column(Boolean, default=False)
    dnd_reason: Mapped[str | None] = mapped_column(String(64))
    dnd_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opted_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    opt_in_source: Mapped[str | None] = mapped_column(String(64))
    last_inbound_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Hand-over: a person answers this contact; the bot stays silent until they release it.
    bot_paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bot_paused_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class AttributeDefinition(Base):
    """The declared type of a custom attribute; values are checked and coerced against it."""

    __tablename__ = "attribute_definitions"
    __table_args__ = (CheckConstraint("type IN ('string', 'number', 'boolean', 'date')", name="type"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    type: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (CheckConstraint("kind IN ('static', 'dynamic')", name="kind"),)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    rules: Mapped[dict[str, Any] | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class SegmentMember(Base):
    """Membership of a static segment."""

    __tablename__ = "segment_members"

    segment_id: Mapped[int] = mapped_column(
        Id, ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        Id, ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_segment_members_contact_id", "contact_id"),)


class SegmentLink(Base):
    """A segment that includes (adds) or excludes (removes) the members of another."""

    __tablename__ = "segment_links"
    __table_args__ = (
        UniqueConstraint("segment_id", "other_id", name="uq_segment_links_pair"),
        CheckConstraint("mode IN ('include', 'exclude')", name="mode"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    segment_id: Mapped[int] = mapped_column(Id, ForeignKey("segments.id", ondelete="CASCADE"))
    # RESTRICT: a segment others are built from cannot vanish under them.
    other_id: Mapped[int] = mapped_column(Id, ForeignKey("segments.id", ondelete="RESTRICT"))
    mode: Mapped[str] = mapped_column(String(8))


IMPORT_STATUSES = ("queued", "running", "done", "failed")


class ContactImport(Base):
    """A CSV upload imported by a worker: its progress, and its report once done."""

    __tablename__ = "contact_imports"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name="status"),
        Index("ix_contact_imports_status", "status"),
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    filename: Mapped[str | None] = mapped_column(String(255))
    mapping: Mapped[dict[str, Any] | None] = mapped_column(Json)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    report: Mapped[dict[str, Any] | None] = mapped_column(Json)
    error: Mapped[dict[str, Any] | None] = mapped_column(Json)  # {"message", "errors"} when failed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ImportChunk(Base):
    """The uploaded file, a megabyte a row, kept in the database so that any worker can read
    it (no disk shared with the web process); deleted once the import is over."""

    __tablename__ = "contact_import_chunks"

    import_id: Mapped[int] = mapped_column(
        Id, ForeignKey("contact_imports.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)
