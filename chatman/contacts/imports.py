"""CSV imports run by a worker: the upload is kept in the database in chunks, read back by
`import_contacts` as a file, with its progress recorded as it goes. A web request only
stores the file (a 50 MB upload in about a second) and answers with where to follow it."""

from __future__ import annotations

import io
import itertools
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import datetime
from typing import IO, Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from chatman.contacts.attributes import MAX_ATTRIBUTES, attribute_types
from chatman.contacts.csv_import import (
    MAX_NEW_ATTRIBUTES,
    check_file_start,
    import_contacts,
)
from chatman.contacts.models import ContactImport, ImportChunk
from chatman.db import TRY_AGAIN_LATER
from chatman.errors import DomainError, NotFound
from chatman.limits import bad_character
from chatman.timeutils import utcnow

CHUNK_BYTES = 1 << 20
log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 1.0  # how often a running import writes how far it got


def create_import(
    session: Session,
    upload: IO[bytes],
    filename: str | None,
    mapping: Mapping[str, Any] | None,
    max_new_attributes: int = MAX_NEW_ATTRIBUTES,
    max_attributes: int = MAX_ATTRIBUTES,
) -> ContactImport:
    """Keep the upload, a chunk a row, for a worker to import; what its first megabyte shows
    wrong (not UTF-8, no phone column, a mapping that does not fit) is refused at once. The
    caller commits, then enqueues."""
    first = upload.read(CHUNK_BYTES)
    check_file_start(first, mapping, attribute_types(session), max_new_attributes, max_attributes)
    name = "".join(ch for ch in filename or "" if not bad_character(ch))[:255] or None
    record = ContactImport(status="queued", filename=name, mapping=mapping)
    session.add(record)
    session.flush()
    size = 0
    rest = iter(lambda: upload.read(CHUNK_BYTES), b"")
    for position, data in enumerate(itertools.chain([first] if first else [], rest)):
        chunk = ImportChunk(import_id=record.id, position=position, data=data)
        session.add(chunk)
        session.flush()
        session.expunge(chunk)  # a chunk at a time: the upload is never held whole
        size += len(data)
    record.size_bytes = size
    return record


def get_import(session: Session, import_id: int) -> ContactImport:
    record = session.get(ContactImport, import_id)
    if record is None:
        raise NotFound(f"import {import_id} not found", {"import_id": ["no such import"]})
    return record


def progress(record: ContactImport) -> float:
    """How far an import has read its file, 0 to 1 (1 once done)."""
    size = record.size_bytes or 0
    if record.status == "done":
        return 1.0
    return min(record.bytes_read / size, 1.0) if size else 0.0


def unfinished(session: Session) -> list[int]:
    """Imports queued or running: the clock makes sure each has a live job."""
    return list(
        session.scalars(select(ContactImport.id).where(ContactImport.status.in_(("queued", "running"))))
    )


class ChunkReader(io.RawIOBase):
    """The stored upload as a binary file that can be rewound (import_contacts reads it twice)."""

    def __init__(self, sessions: sessionmaker, import_id: int) -> None:
        self.sessions = sessions
        self.import_id = import_id
        self.position = 0
        self.buffer = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if (offset, whence) != (0, io.SEEK_SET):
            raise io.UnsupportedOperation("an import is read from the start")
        self.position, self.buffer = 0, b""
        return 0

    def readinto(self, target) -> int:
        if not self.buffer:
            with self.sessions() as session:
                data = session.scalar(
                    select(ImportChunk.data).where(
                        ImportChunk.import_id == self.import_id, ImportChunk.position == self.position
                    )
                )
            if data is None:
                return 0
            self.buffer, self.position = bytes(data), self.position + 1
        n = min(len(target), len(self.buffer))
        target[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n


def run_import(
    sessions: sessionmaker,
    import_id: int,
    *,
    default_region: str | None,
    batch_size: int = 1000,
    max_new_attributes: int = MAX_NEW_ATTRIBUTES,
    max_attributes: int = MAX_ATTRIBUTES,
    now: Callable[[], datetime] = utcnow,
) -> str:
    """Import the stored upload; returns the import's final status. Run again after a crash,
    it imports the file again (rows upsert on the phone, so nothing is doubled)."""
    with sessions() as session:
        record = session.get(ContactImport, import_id)
        if record is None or record.status in ("done", "failed"):
            return record.status if record else "missing"
        mapping = record.mapping
        record.status, record.started_at, record.bytes_read = "running", now(), 0
        session.commit()

    progress = {"bytes": 0, "written_at": time.monotonic()}

    def on_progress(n: int) -> None:
        progress["bytes"] += n
        if time.monotonic() - progress["written_at"] >= PROGRESS_EVERY_S:
            _set(sessions, import_id, bytes_read=progress["bytes"])
            progress["written_at"] = time.monotonic()

    outcome: dict[str, Any]
    with sessions() as session:
        try:
            report = import_contacts(
                session,
                io.BufferedReader(ChunkReader(sessions, import_id), CHUNK_BYTES),
                default_region=default_region,
                mapping=mapping,
                batch_size=batch_size,
                on_progress=on_progress,
                max_new_attributes=max_new_attributes,
                max_attributes=max_attributes,
            )
            outcome = {"status": "done", "report": asdict(report)}
        except DomainError as error:  # the file itself is refused: nothing was written
            session.rollback()
            outcome = {"status": "failed", "error": {"message": error.message, "errors": error.errors}}
        except TRY_AGAIN_LATER:
            raise  # the database is away: the job fails, and the clock starts the import again
        except Exception as error:  # anything else would fail again the same way: say so, once
            session.rollback()
            log.exception("import %s stopped", import_id)
            reason = (
                f"the import stopped on an unexpected error ({error.__class__.__name__}); "
                "see the worker's log"
            )
            outcome = {"status": "failed", "error": {"message": reason, "errors": {}}}
    with sessions() as session:
        record = session.get(ContactImport, import_id)
        record.status, record.finished_at = outcome["status"], now()
        record.bytes_read = record.size_bytes if outcome["status"] == "done" else progress["bytes"]
        record.report, record.error = outcome.get("report"), outcome.get("error")
        session.execute(delete(ImportChunk).where(ImportChunk.import_id == import_id))
        session.commit()
    return outcome["status"]


def _set(sessions: sessionmaker, import_id: int, **values: Any) -> None:
    with sessions() as session:
        session.execute(update(ContactImport).where(ContactImport.id == import_id).values(**values))
        session.commit()
