"""Segments: static member lists and dynamic rules, combined with include/exclude links."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, delete, func, not_, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatman.contacts.attributes import attribute_types
from chatman.contacts.fields import normalise_phone
from chatman.contacts.models import SEGMENT_KINDS, Contact, Segment, SegmentLink, SegmentMember
from chatman.contacts.segment_rules import compile_rules
from chatman.dialects import insert_ignore
from chatman.errors import Conflict, Invalid, NotFound
from chatman.timeutils import utcnow

MAX_LINK_DEPTH = 10
MAX_NOT_FOUND = 1000  # misses listed by a streamed members import; all are counted


@dataclass
class MemberChange:
    changed: int
    not_found: list[dict[str, Any]]
    not_found_count: int = 0


def get_segment(session: Session, segment_id: int) -> Segment:
    segment = session.get(Segment, segment_id)
    if segment is None:
        raise NotFound(f"segment {segment_id} not found")
    return segment


def list_segments(session: Session) -> list[Segment]:
    return list(session.scalars(select(Segment).order_by(Segment.id)))


def segment_links(session: Session, segment_id: int) -> dict[str, list[int]]:
    links = {"include": [], "exclude": []}
    rows = session.execute(
        select(SegmentLink.mode, SegmentLink.other_id)
        .where(SegmentLink.segment_id == segment_id)
        .order_by(SegmentLink.id)
    )
    for mode, other in rows:
        links[mode].append(other)
    return links


def _set_links(session: Session, segment: Segment, include: Sequence[int], exclude: Sequence[int]) -> None:
    errors: dict[str, list[str]] = {}
    both = set(include) & set(exclude)
    if both:
        errors["exclude_segments"] = [f"segment {sorted(both)[0]} is also included"]
    for field, ids in (("include_segments", include), ("exclude_segments", exclude)):
        for i, other_id in enumerate(ids):
            if other_id == segment.id:
                errors.setdefault(f"{field}[{i}]", []).append("a segment cannot contain itself")
            elif session.get(Segment, other_id) is None:
                errors.setdefault(f"{field}[{i}]", []).append(f"segment {other_id} not found")
    if errors:
        raise Invalid.many(errors)
    session.execute(delete(SegmentLink).where(SegmentLink.segment_id == segment.id))
    for mode, ids in (("include", include), ("exclude", exclude)):
        for other_id in dict.fromkeys(ids):
            session.add(SegmentLink(segment_id=segment.id, other_id=other_id, mode=mode))
    session.flush()
    _check_no_cycle(session, segment.id)


def _check_no_cycle(session: Session, start: int) -> None:
    edges: dict[int, list[int]] = {}
    for seg_id, other_id in session.execute(select(SegmentLink.segment_id, SegmentLink.other_id)):
        edges.setdefault(seg_id, []).append(other_id)

    def visit(node: int, trail: tuple[int, ...]) -> None:
        if len(trail) > MAX_LINK_DEPTH:
            raise Invalid("include_segments", f"segments nest at most {MAX_LINK_DEPTH} deep")
        for nxt in edges.get(node, []):
            if nxt == start:
                chain = " -> ".join(str(s) for s in (*trail, nxt))
                raise Invalid("include_segments", f"segments would contain each other: {chain}")
            visit(nxt, (*trail, nxt))

    visit(start, (start,))


def _validate(session: Session, kind: str, rules: Any, now: datetime) -> None:
    if kind not in SEGMENT_KINDS:
        raise Invalid("kind", f"must be one of {', '.join(SEGMENT_KINDS)}")
    if kind == "dynamic":
        if rules is None:
            raise Invalid("rules", "a dynamic segment needs rules")
        compile_rules(rules, attribute_types(session), now)
    elif rules is not None:
        raise Invalid("rules", "a static segment has members, not rules")


def create_segment(session: Session, data: Mapping[str, Any], now: datetime | None = None) -> Segment:
    now = now or utcnow()
    kind = data.get("kind", "static")
    _validate(session, kind, data.get("rules"), now)
    segment = Segment(
        name=data["name"],
        description=data.get("description"),
        kind=kind,
        rules=data.get("rules"),
        created_at=now,
        updated_at=now,
    )
    session.add(segment)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict.taken("segment", data["name"]) from None
    _set_links(session, segment, data.get("include_segments", []), data.get("exclude_segments", []))
    return segment


def update_segment(
    session: Session, segment_id: int, data: Mapping[str, Any], now: datetime | None = None
) -> Segment:
    now = now or utcnow()
    segment = get_segment(session, segment_id)
    if "kind" in data and data["kind"] != segment.kind:
        raise Invalid("kind", "the kind of a segment cannot change; create a new segment")
    if "rules" in data:
        _validate(session, segment.kind, data["rules"], now)
        segment.rules = data["rules"]
    for key in ("name", "description"):
        if key in data:
            setattr(segment, key, data[key])
    name = segment.name  # read now: a failed flush expires it
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict.taken("segment", name) from None
    if "include_segments" in data or "exclude_segments" in data:
        links = segment_links(session, segment.id)
        _set_links(
            session,
            segment,
            data.get("include_segments", links["include"]),
            data.get("exclude_segments", links["exclude"]),
        )
    return segment


def delete_segment(session: Session, segment_id: int) -> None:
    get_segment(session, segment_id)
    users = list(session.scalars(select(SegmentLink.segment_id).where(SegmentLink.other_id == segment_id)))
    if users:
        raise Conflict(f"segment {segment_id} is used by segment(s) {', '.join(map(str, users))}")
    try:
        with session.begin_nested():
            session.execute(delete(Segment).where(Segment.id == segment_id))
    except IntegrityError:  # a campaign's audience names it (campaigns sit above contacts)
        reason = "is the audience of a campaign; it cannot be deleted"
        raise Conflict(f"segment {segment_id} {reason}", {"segment_id": [reason]}) from None


def segment_condition(session: Session, segment_id: int, now: datetime | None = None) -> ColumnElement[bool]:
    """The SQL condition on `contacts` for membership of a segment, links resolved."""
    now = now or utcnow()
    types = attribute_types(session)
    segments = {s.id: s for s in session.scalars(select(Segment))}
    links: dict[int, list[tuple[str, int]]] = {}
    for seg_id, mode, other in session.execute(
        select(SegmentLink.segment_id, SegmentLink.mode, SegmentLink.other_id).order_by(SegmentLink.id)
    ):
        links.setdefault(seg_id, []).append((mode, other))
    if segment_id not in segments:
        raise NotFound(f"segment {segment_id} not found")

    def build(seg_id: int, depth: int) -> ColumnElement[bool]:
        if depth > MAX_LINK_DEPTH:
            raise Invalid("include_segments", f"segments nest at most {MAX_LINK_DEPTH} deep")
        segment = segments[seg_id]
        if segment.kind == "dynamic":
            base = compile_rules(segment.rules, types, now)
        else:
            base = Contact.id.in_(select(SegmentMember.contact_id).where(SegmentMember.segment_id == seg_id))
        included = [build(o, depth + 1) for m, o in links.get(seg_id, []) if m == "include"]
        excluded = [build(o, depth + 1) for m, o in links.get(seg_id, []) if m == "exclude"]
        condition = or_(base, *included) if included else base
        if excluded:
            condition = and_(condition, *(not_(e) for e in excluded))
        return condition

    return build(segment_id, 0)


def audience_query(session: Session, segment_id: int, now: datetime | None = None) -> Select:
    """SELECT of the ids of a segment's contacts, for counts, samples and later freezing."""
    return select(Contact.id).where(segment_condition(session, segment_id, now))


def preview_condition(
    session: Session, condition: ColumnElement[bool], sample_size: int = 10
) -> tuple[int, list[Contact]]:
    count = session.scalar(select(func.count()).select_from(Contact).where(condition))
    sample = list(session.scalars(select(Contact).where(condition).order_by(Contact.id).limit(sample_size)))
    return count or 0, sample


def preview_segment(
    session: Session, segment_id: int, sample_size: int = 10, now: datetime | None = None
) -> tuple[int, list[Contact]]:
    return preview_condition(session, segment_condition(session, segment_id, now), sample_size)


def preview_rules(
    session: Session, rules: Any, sample_size: int = 10, now: datetime | None = None
) -> tuple[int, list[Contact]]:
    condition = compile_rules(rules, attribute_types(session), now or utcnow())
    return preview_condition(session, condition, sample_size)


def segments_of(session: Session, contact_id: int, now: datetime | None = None) -> list[Segment]:
    """The segments a contact is in now (static by membership, dynamic by their rules)."""
    return [
        segment
        for segment in list_segments(session)
        if session.scalar(
            select(Contact.id).where(Contact.id == contact_id, segment_condition(session, segment.id, now))
        )
    ]


def _static(session: Session, segment_id: int) -> Segment:
    segment = get_segment(session, segment_id)
    if segment.kind != "static":
        raise Invalid("kind", "members are added to static segments; a dynamic one follows its rules")
    return segment


def resolve_members(
    session: Session,
    contact_ids: Iterable[int] = (),
    phones: Iterable[tuple[int | str, str]] = (),
    default_region: str | None = None,
) -> tuple[set[int], list[dict[str, Any]]]:
    """Contact ids for the given ids and (label, phone) pairs, and what could not be found."""
    found: set[int] = set()
    missing: list[dict[str, Any]] = []
    ids = list(dict.fromkeys(contact_ids))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        existing = set(session.scalars(select(Contact.id).where(Contact.id.in_(chunk))))
        found |= existing
        missing += [{"contact_id": i, "reason": "no such contact"} for i in chunk if i not in existing]
    pending: dict[str, list[int | str]] = {}
    for label, raw in phones:
        try:
            pending.setdefault(normalise_phone(raw, default_region), []).append(label)
        except Invalid as exc:
            missing.append({"row": label, "value": raw, "reason": exc.reason})
    numbers = list(pending)
    for start in range(0, len(numbers), 500):
        chunk = numbers[start : start + 500]
        rows = dict(session.execute(select(Contact.phone, Contact.id).where(Contact.phone.in_(chunk))).all())
        for number in chunk:
            if number in rows:
                found.add(rows[number])
            else:
                for label in pending[number]:
                    missing.append({"row": label, "value": number, "reason": "no contact with this phone"})
    return found, missing


def add_members(
    session: Session, segment_id: int, contact_ids: Iterable[int], now: datetime | None = None
) -> int:
    _static(session, segment_id)
    now = now or utcnow()
    rows = [{"segment_id": segment_id, "contact_id": cid, "added_at": now} for cid in contact_ids]
    added = 0
    for start in range(0, len(rows), 1000):
        added += insert_ignore(
            session, SegmentMember, rows[start : start + 1000], ["segment_id", "contact_id"]
        )
    return added


def remove_members(session: Session, segment_id: int, contact_ids: Iterable[int]) -> int:
    _static(session, segment_id)
    ids = list(contact_ids)
    removed = 0
    for start in range(0, len(ids), 1000):
        removed += session.execute(
            delete(SegmentMember).where(
                SegmentMember.segment_id == segment_id,
                SegmentMember.contact_id.in_(ids[start : start + 1000]),
            )
        ).rowcount
    return removed


def change_members(
    session: Session,
    segment_id: int,
    action: str,
    contact_ids: Iterable[int] = (),
    phones: Iterable[tuple[int | str, str]] = (),
    default_region: str | None = None,
) -> MemberChange:
    """Add or remove members given by id and/or phone; report the ones not found."""
    _static(session, segment_id)
    found, missing = resolve_members(session, contact_ids, phones, default_region)
    if action == "add":
        changed = add_members(session, segment_id, sorted(found))
    else:
        changed = remove_members(session, segment_id, sorted(found))
    return MemberChange(changed=changed, not_found=missing, not_found_count=len(missing))


def add_members_streamed(
    session: Session,
    segment_id: int,
    phones: Iterable[tuple[int | str, str]],
    default_region: str | None = None,
    chunk: int = 1000,
) -> MemberChange:
    """`change_members` over a stream of (label, phone) pairs, a chunk at a time, so a file
    of any size is never held in memory; at most MAX_NOT_FOUND misses are listed."""
    _static(session, segment_id)
    total = MemberChange(changed=0, not_found=[])
    iterator = iter(phones)
    while batch := list(islice(iterator, chunk)):
        found, missing = resolve_members(session, (), batch, default_region)
        total.changed += add_members(session, segment_id, sorted(found))
        total.not_found_count += len(missing)
        total.not_found += missing[: max(0, MAX_NOT_FOUND - len(total.not_found))]
    return total


def member_count(session: Session, segment_id: int) -> int:
    return (
        session.scalar(
            select(func.count()).select_from(SegmentMember).where(SegmentMember.segment_id == segment_id)
        )
        or 0
    )
