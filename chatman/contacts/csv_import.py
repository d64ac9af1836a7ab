"""Streamed CSV import of contacts: upsert on the canonical phone, a report of rejected rows.

The file is read twice, never held in memory. The first pass checks that it is UTF-8 CSV
with a phone column, checks every row as the second pass will, and lets the rows it accepts
vote on the type of each new attribute column; a malformed file fails before anything is
written. The second pass upserts the accepted rows in batches, each committed, so an
interrupted import keeps what it did and can simply be run again. Every value a row can hold
is checked against what the database keeps (lengths, NUL), so a row the database would refuse
is a row error, never a failed batch.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from itertools import islice
from typing import IO, Any, TypeVar

from sqlalchemy.orm import Session

from chatman.contacts.attributes import MAX_ATTRIBUTES, attribute_types, define_attribute
from chatman.contacts.fields import (
    coerce_attribute,
    normalise_phone,
    validate_attribute_name,
    validate_timezone,
)
from chatman.contacts.models import Contact
from chatman.dialects import upsert
from chatman.errors import Invalid
from chatman.limits import bad_character
from chatman.timeutils import utcnow

MAX_REPORTED_ERRORS = 1000
# A file may create this many attributes, and an install hold this many: a file with a
# column per customer would otherwise define thousands (settings can change both).
MAX_NEW_ATTRIBUTES = 50
TEXT_LIMITS = {"name": 200, "wa_id": 32}  # their columns' lengths
CORE_TARGETS = ("phone", "name", "timezone", "wa_id")
ALIASES = {
    "phone": {
        "phone",
        "phone_number",
        "phonenumber",
        "mobile",
        "mobile_number",
        "msisdn",
        "whatsapp",
        "whatsapp_number",
        "wa_number",
        "number",
        "contact_number",
        "cell",
    },
    "name": {"name", "full_name", "fullname", "contact_name", "customer_name"},
    "timezone": {"timezone", "time_zone", "tz"},
    "wa_id": {"wa_id", "waid"},
}

csv.field_size_limit(1 << 20)


@dataclass
class RowError:
    row: int
    column: str | None
    value: str | None
    reason: str


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0
    updated: int = 0
    failed: int = 0
    # Rows repeating a phone met earlier in the same batch: merged into that row.
    merged: int = 0
    errors: list[RowError] = field(default_factory=list)
    errors_truncated: bool = False
    new_attributes: dict[str, str] = field(default_factory=dict)

    def add_error(self, error: RowError) -> None:
        self.failed += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(error)
        else:
            self.errors_truncated = True


def _slug(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")


def plan_columns(header: list[str], mapping: Mapping[str, str | None] | None) -> dict[str, str]:
    """Map each used column to `phone`, `name`, `timezone`, `wa_id` or `attributes.<name>`."""
    if not header or all(not h.strip() for h in header):
        raise Invalid("file", "the file is empty: the first line must name the columns")
    for column in header:
        if bad_character(column):
            raise Invalid("file", f"the header names a column {column!r} that {bad_character(column)}")
    for column, target in (mapping or {}).items():
        if bad_character(column) or (target and bad_character(target)):
            raise Invalid("mapping", "a column name or target holds a NUL character")
    duplicates = {h for h in header if header.count(h) > 1}
    if duplicates:
        raise Invalid("file", f"column {sorted(duplicates)[0]!r} appears twice in the header")
    plan: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    mapping = dict(mapping or {})
    for column in mapping:
        if column not in header:
            errors[f"mapping.{column}"] = ["no such column in the file"]
    for column in header:
        if column in mapping:
            target = mapping[column]
            if target is None or target == "":
                continue
            if target in CORE_TARGETS:
                plan[column] = target
            elif target.startswith("attributes."):
                try:
                    validate_attribute_name(target[len("attributes.") :], f"mapping.{column}")
                    plan[column] = target
                except Invalid as exc:
                    errors.update(exc.errors)
            else:
                errors[f"mapping.{column}"] = [
                    f"unknown target {target!r}; one of {', '.join(CORE_TARGETS)}, "
                    "attributes.<name>, or null to skip the column"
                ]
            continue
        slug = _slug(column)
        if not slug:
            continue
        core = next((t for t, names in ALIASES.items() if slug in names), None)
        if core is not None and core not in plan.values():
            plan[column] = core
            continue
        try:
            validate_attribute_name(slug, f"mapping.{column}")
        except Invalid:
            errors[f"mapping.{column}"] = [
                f"column {column!r} does not make an attribute name; map it to "
                "attributes.<name> or to null to skip it"
            ]
            continue
        plan[column] = f"attributes.{slug}"
    targets = list(plan.values())
    for target in set(targets):
        if targets.count(target) > 1:
            errors.setdefault("mapping", []).append(f"two columns map to {target}")
    if "phone" not in targets and not errors:
        raise Invalid(
            "file",
            f"no phone column: the header has {', '.join(repr(h) for h in header)}; name one "
            "column phone (or mobile, whatsapp, ...) or map it with mapping",
        )
    if errors:
        raise Invalid.many(errors)
    return plan


NUMBER = re.compile(r"-?[\d,]*\.?\d+")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _kinds(value: str) -> tuple[str, ...]:
    """The attribute types a cell's text fits, most specific first."""
    if value.lower() in ("true", "false", "yes", "no"):
        return ("boolean",)
    if NUMBER.fullmatch(value):
        return ("number",)
    if ISO_DATE.fullmatch(value):
        try:
            date.fromisoformat(value)
            return ("date",)
        except ValueError:
            pass
    return ()


def _elect(votes: Counter[str]) -> str | None:
    """A new column's type: the one most of its values fit (more than half), else string;
    None when no accepted row has a value in it (it then defines nothing)."""
    total = sum(votes.values())
    if not total:
        return None
    kind, count = votes.most_common(1)[0]
    return kind if count * 2 > total else "string"


class _CountingReader(io.RawIOBase):
    """A binary reader that reports how many bytes have been consumed."""

    def __init__(self, raw: IO[bytes], on_bytes: Callable[[int], None] | None) -> None:
        self.raw = raw
        self.on_bytes = on_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        if self.on_bytes and n:
            self.on_bytes(n)
        return n


def _records(
    binfile: IO[bytes], on_bytes: Callable[[int], None] | None = None
) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    text = io.TextIOWrapper(
        io.BufferedReader(_CountingReader(binfile, on_bytes), 1 << 16),
        encoding="utf-8-sig",
        newline="",
    )
    sample = text.read(1 << 16)
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(_chain(sample, text), dialect)
    try:
        header = next(reader)
    except StopIteration:
        header = []
    header = [h.strip() for h in header]

    def rows() -> Iterator[tuple[int, list[str]]]:
        yield from enumerate(reader, start=2)

    return header, rows()


def _chain(sample: str, rest: IO[str]) -> Iterator[str]:
    yield from io.StringIO(sample + rest.readline())
    yield from rest


def scan(
    binfile: IO[bytes],
    mapping: Mapping[str, str | None] | None,
    known_types: dict[str, str],
    default_region: str | None = None,
    max_new_attributes: int = MAX_NEW_ATTRIBUTES,
    max_attributes: int = MAX_ATTRIBUTES,
    workers: int = 1,
    batch_size: int = 1000,
) -> tuple[dict[str, str], dict[str, str], int]:
    """First pass: the column plan, types for new attributes (voted by the rows that pass
    every other check), and the number of data rows."""
    rows = 0
    try:
        header, records = _records(binfile)
        plan = plan_columns(header, mapping)
        new_attrs = {
            c: t[len("attributes.") :]
            for c, t in plan.items()
            if t.startswith("attributes.") and t[len("attributes.") :] not in known_types
        }
        _check_caps(len(new_attrs), len(known_types), max_new_attributes, max_attributes)
        vote = partial(
            _vote_chunk,
            width=len(header),
            known=[(header.index(c), c, t) for c, t in plan.items() if c not in new_attrs],
            types=known_types,
            default_region=default_region,
            new={c: header.index(c) for c in new_attrs},
        )
        votes: dict[str, Counter[str]] = {c: Counter() for c in new_attrs}
        chunks = _chunks(((n, r) for n, r in records if any(cell.strip() for cell in r)), batch_size)
        for counted, chunk_votes in _parse_all(chunks, vote, workers):
            rows += counted
            for column, counter in chunk_votes.items():
                votes[column].update(counter)
    except UnicodeDecodeError:
        raise Invalid(
            "file", f"the file is not UTF-8 text (stopped near data row {rows + 1}); save it as 'CSV UTF-8'"
        ) from None
    except csv.Error as exc:
        raise Invalid("file", f"the file is not valid CSV near data row {rows + 1}: {exc}") from None
    elected = {name: _elect(votes[column]) for column, name in new_attrs.items()}
    # A new column no accepted row fills defines nothing, and is not imported.
    plan = {c: t for c, t in plan.items() if c not in new_attrs or elected[new_attrs[c]] is not None}
    return plan, {name: kind for name, kind in elected.items() if kind is not None}, rows


def _vote_chunk(
    chunk: list[Record],
    width: int,
    known: list[tuple[int, str, str]],
    types: dict[str, str],
    default_region: str | None,
    new: dict[str, int],
) -> tuple[int, dict[str, Counter[str]]]:
    """The rows of `chunk` that pass every check but their new columns' types vote on those
    types: how many rows there were, and per new column the types its cells fit."""
    votes: dict[str, Counter[str]] = {column: Counter() for column in new}
    for number, record in chunk:
        if isinstance(_parse_row(number, record, width, known, types, default_region), RowError):
            continue
        cells = {column: record[i].strip() if i < len(record) else "" for column, i in new.items()}
        if any(bad_character(cell) for cell in cells.values()):
            continue  # refused for it in the second pass: it does not vote
        for column, cell in cells.items():
            if cell:
                votes[column].update(_kinds(cell) or ("string",))
    return len(chunk), votes


def check_file_start(
    start: bytes,
    mapping: Mapping[str, str | None] | None,
    known_types: dict[str, str],
    max_new_attributes: int = MAX_NEW_ATTRIBUTES,
    max_attributes: int = MAX_ATTRIBUTES,
) -> None:
    """What a file's first bytes (its whole lines) tell at once, before it is queued for
    import: UTF-8 text, a header with a phone column, a mapping that fits it, and no more new
    attributes than allowed."""
    cut = start.rfind(b"\n")
    head = start if cut < 0 else start[: cut + 1]  # whole lines: a character may straddle the cut
    try:
        head.decode("utf-8")
        header, _ = _records(io.BytesIO(head))
    except UnicodeDecodeError:
        raise Invalid("file", "the file is not UTF-8 text; save it as 'CSV UTF-8'") from None
    except csv.Error as exc:
        raise Invalid("file", f"the file is not valid CSV: {exc}") from None
    plan = plan_columns(header, mapping)
    new = {
        t for t in plan.values() if t.startswith("attributes.") and t[len("attributes.") :] not in known_types
    }
    _check_caps(len(new), len(known_types), max_new_attributes, max_attributes)


def preview(start: bytes, mapping: Mapping[str, str | None] | None = None, rows: int = 5) -> dict[str, Any]:
    """A file's header, its first rows and where each column would go (phone, name, ...,
    `attributes.<name>`, or nowhere), for a person to check the mapping before importing."""
    cut = start.rfind(b"\n")
    head = start if cut < 0 else start[: cut + 1]  # whole lines: the start may end mid-line
    try:
        head.decode("utf-8")
        header, records = _records(io.BytesIO(head))
        first = [values for _, values in islice(records, rows)]
    except UnicodeDecodeError:
        raise Invalid("file", "the file is not UTF-8 text; save it as 'CSV UTF-8'") from None
    except csv.Error as exc:
        raise Invalid("file", f"the file is not valid CSV: {exc}") from None
    try:
        plan, problem = plan_columns(header, mapping), None
    except Invalid as error:
        if error.field == "file" and not header:
            raise
        plan, problem = {}, error.message
    return {
        "header": header,
        "rows": first,
        "targets": {column: plan.get(column) for column in header},
        "problem": problem,
    }


def _check_caps(new: int, existing: int, max_new: int, max_total: int) -> None:
    if new > max_new:
        raise Invalid(
            "file",
            f"the file would create {new} new attributes; an import may create at most {max_new} "
            "(IMPORT_MAX_NEW_ATTRIBUTES): map the columns you do not need to null",
        )
    if existing + new > max_total:
        raise Invalid(
            "file",
            f"the file would create {new} new attributes, and {existing} exist already; an install "
            f"holds at most {max_total} (MAX_ATTRIBUTES)",
        )


def import_contacts(
    session: Session,
    binfile: IO[bytes],
    *,
    default_region: str | None,
    mapping: Mapping[str, str | None] | None = None,
    batch_size: int = 1000,
    workers: int = 1,
    on_progress: Callable[[int], None] | None = None,
    now: datetime | None = None,
    max_new_attributes: int = MAX_NEW_ATTRIBUTES,
    max_attributes: int = MAX_ATTRIBUTES,
) -> ImportReport:
    """Import contacts from a seekable binary CSV file, committing every `batch_size` rows.

    With `workers` > 1, rows are checked in that many processes (phone validation is most
    of an import's CPU) while this one reads the file and writes the database.
    `on_progress` receives the number of bytes consumed since its last call.
    """
    now = now or utcnow()
    types = attribute_types(session)
    plan, new_types, _ = scan(
        binfile, mapping, types, default_region, max_new_attributes, max_attributes, workers, batch_size
    )
    binfile.seek(0)
    report = ImportReport(new_attributes=new_types)
    for name, type_ in new_types.items():
        define_attribute(session, name, type_, max_attributes)
        types[name] = type_
    session.commit()

    header, records = _records(binfile, on_progress)
    parse = partial(
        _parse_chunk,
        width=len(header),
        columns=[(header.index(c), c, t) for c, t in plan.items()],
        types=types,
        default_region=default_region,
    )
    chunks = _chunks(((n, r) for n, r in records if any(cell.strip() for cell in r)), batch_size)
    batch: dict[str, dict[str, Any]] = {}
    try:
        for parsed in _parse_all(chunks, parse, workers):
            for row in parsed:
                report.rows += 1
                if isinstance(row, RowError):
                    report.add_error(row)
                    continue
                previous = batch.get(row["phone"])
                if previous is not None:
                    report.merged += 1
                    row["attributes"] = {**previous["attributes"], **row["attributes"]}
                    for key in ("name", "timezone", "wa_id"):
                        row[key] = row[key] if row[key] is not None else previous[key]
                batch[row["phone"]] = row
                if len(batch) >= batch_size:
                    _flush(session, batch, report, now)
    except UnicodeDecodeError:  # the file changed between the two passes
        raise Invalid("file", "the file is not UTF-8 text") from None
    _flush(session, batch, report, now)
    return report


Record = tuple[int, list[str]]
T = TypeVar("T")


def _chunks(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    iterator = iter(records)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _parse_all(
    chunks: Iterator[list[Record]], parse: Callable[[list[Record]], T], workers: int
) -> Iterator[T]:
    """Parsed chunks in file order; with workers, a bounded number in flight at a time."""
    if workers <= 1:
        yield from map(parse, chunks)
        return
    with ProcessPoolExecutor(workers) as pool:
        pending: deque[Future] = deque()
        for chunk in chunks:
            pending.append(pool.submit(parse, chunk))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _parse_chunk(
    chunk: list[Record],
    width: int,
    columns: list[tuple[int, str, str]],
    types: dict[str, str],
    default_region: str | None,
) -> list[dict[str, Any] | RowError]:
    return [_parse_row(number, record, width, columns, types, default_region) for number, record in chunk]


def _parse_row(
    number: int,
    record: list[str],
    width: int,
    columns: list[tuple[int, str, str]],
    types: dict[str, str],
    default_region: str | None,
) -> dict[str, Any] | RowError:
    if len(record) > width and any(cell.strip() for cell in record[width:]):
        return RowError(number, None, None, f"row has {len(record)} fields but the header has {width}")
    row: dict[str, Any] = {"phone": None, "name": None, "timezone": None, "wa_id": None, "attributes": {}}
    for index, column, target in columns:
        cell = record[index].strip() if index < len(record) else ""
        reason = bad_character(cell)
        if reason:
            return RowError(number, column, cell.replace("\x00", "\\0"), reason)
        try:
            if target == "phone":
                row["phone"] = normalise_phone(cell, default_region, column)
            elif not cell:
                continue
            elif target == "timezone":
                row["timezone"] = validate_timezone(cell, column)
            elif target in TEXT_LIMITS:
                if len(cell) > TEXT_LIMITS[target]:
                    raise Invalid(
                        column, f"at most {TEXT_LIMITS[target]} characters (this one has {len(cell)})"
                    )
                row[target] = cell
            else:
                name = target[len("attributes.") :]
                row["attributes"][name] = coerce_attribute(cell, types[name], column)
        except Invalid as exc:
            return RowError(number, column, cell, exc.reason)
    return row


def _flush(session: Session, batch: dict[str, dict[str, Any]], report: ImportReport, now: datetime) -> None:
    if not batch:
        return
    created = upsert(
        session,
        Contact,
        list(batch.values()),
        "phone",
        constants={"dnd": False, "created_at": now, "updated_at": now},
        keep_existing=("name", "timezone", "wa_id"),
        merge_json=("attributes",),
        overwrite=("updated_at",),
    )
    session.commit()
    report.created += created
    report.updated += len(batch) - created
    batch.clear()
