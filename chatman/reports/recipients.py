"""The contacts behind a report's counters: an outcome (a counter's name) as a condition on
the ledger, a keyset-paginated drill-down, a streamed CSV export, and a static segment built
from an outcome ("read but not replied") for the next campaign.

Each outcome's condition is the counter's own definition (`ledger.counters.metrics_of`, and
`messaging.engagement` for taps, opt-outs and link clicks), so a drill-down lists exactly
the contacts its counter counts.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, literal, not_, select, true
from sqlalchemy.orm import Session

from chatman.contacts import segments
from chatman.contacts.models import Contact, SegmentMember
from chatman.db import Id, UTCDateTime
from chatman.dialects import insert_ignore_select
from chatman.errors import Invalid
from chatman.ledger import states
from chatman.ledger.models import Message
from chatman.messaging import engagement
from chatman.messaging.models import InboundMessage, LinkClick, MessageTap
from chatman.reports import errors
from chatman.timeutils import utcnow

SIMPLE = {
    "targeted": true(),
    "skipped": Message.status == states.SKIPPED,
    "held": Message.status == states.HELD,
    "submitted": Message.submitted_at.is_not(None),
    "sent": Message.status.in_((states.SENT, states.DELIVERED, states.READ)),
    "delivered": Message.status.in_((states.DELIVERED, states.READ)),
    "read": Message.status == states.READ,
    "failed": Message.status == states.FAILED,
    "unconfirmed": Message.status == states.UNCONFIRMED,
    "replied": Message.replied_at.is_not(None),
    "clicked": Message.clicked_at.is_not(None),
    "opted_out": Message.opted_out_at.is_not(None),
}
OUTCOMES_HELP = (
    "a counter's name: targeted, skipped, skipped:<reason>, held, submitted, sent, delivered, read, "
    "replied, clicked, link:<id>, tapped:<payload>, failed, failed:<code>, limited_by_meta, "
    "outside_window, unconfirmed, opted_out"
)
PAGE = 2000


def outcome(name: str) -> ColumnElement[bool]:
    """The condition on a message row of the outcome (counter) `name`."""
    if name in SIMPLE:
        return SIMPLE[name]
    if name in errors.GROUPS:
        return and_(Message.status == states.FAILED, Message.error_code.in_(sorted(errors.GROUPS[name])))
    kind, _, value = name.partition(":")
    if value and kind in ("skipped", "failed"):
        column = Message.skip_reason if kind == "skipped" else Message.error_code
        status = states.SKIPPED if kind == "skipped" else states.FAILED
        return and_(Message.status == status, column.is_(None) if value == "unknown" else column == value)
    if value and kind == "tapped":
        # A counter keeps a payload's first 40 characters: those name every longer payload.
        payload = (
            MessageTap.payload.startswith(value, autoescape=True)
            if len(value) >= engagement.PAYLOAD_CHARS
            else MessageTap.payload == value
        )
        return exists().where(MessageTap.message_id == Message.id, payload)
    if value and kind == "link":
        if not value.isdigit():
            raise Invalid("outcome", f"link:{value} names no link: give its number")
        return exists().where(LinkClick.message_id == Message.id, LinkClick.link_id == int(value))
    raise Invalid("outcome", f"unknown outcome {name!r}: {OUTCOMES_HELP}")


@dataclass(frozen=True)
class Scope:
    """Whose messages: a campaign, optionally one run and/or one step of it."""

    campaign_id: int
    run_id: int | None = None
    step_id: int | None = None

    def where(self) -> list[ColumnElement[bool]]:
        conditions = [Message.campaign_id == self.campaign_id]
        if self.run_id is not None:
            conditions.append(Message.run_id == self.run_id)
        if self.step_id is not None:
            conditions.append(Message.step_id == self.step_id)
        return conditions


def matching(include: Sequence[str], exclude: Sequence[str] = ()) -> ColumnElement[bool]:
    """Messages with every outcome of `include` and none of `exclude`."""
    if not include:
        raise Invalid("outcome", "name at least one outcome")
    condition = and_(*(outcome(name) for name in include))
    for name in exclude:
        condition = and_(condition, not_(outcome(name)))
    return condition


COLUMNS = (
    Message.id,
    Message.contact_id,
    Contact.phone,
    Contact.name,
    Message.run_id,
    Message.step_id,
    Message.status,
    Message.skip_reason,
    Message.error_code,
    Message.submitted_at,
    Message.sent_at,
    Message.delivered_at,
    Message.read_at,
    Message.failed_at,
    Message.replied_at,
    Message.clicked_at,
)


def _page(session: Session, scope: Scope, condition, after: int, limit: int) -> list:
    return session.execute(
        select(*COLUMNS)
        .outerjoin(Contact, Contact.id == Message.contact_id)
        .where(*scope.where(), condition, Message.id > after)
        .order_by(Message.id)
        .limit(limit)
    ).all()


def _replies(session: Session, message_ids: Sequence[int]) -> dict[int, tuple[str | None, str | None]]:
    """The first reply (its text, the button it tapped) to each of these messages."""
    first: dict[int, tuple[str | None, str | None]] = {}
    if not message_ids:
        return first
    for reply_to, body, payload in session.execute(
        select(InboundMessage.reply_to_id, InboundMessage.body, InboundMessage.button_payload)
        .where(InboundMessage.reply_to_id.in_(message_ids))
        .order_by(InboundMessage.reply_to_id, InboundMessage.id)
    ):
        first.setdefault(reply_to, (body, payload))
    return first


def _item(row, reply: tuple[str | None, str | None] | None) -> dict[str, Any]:
    item = dict(row._mapping)
    item["message_id"] = item.pop("id")
    item["error_meaning"] = errors.meaning(row.error_code) if row.status == states.FAILED else None
    item["reply"], item["button"] = reply or (None, None)
    return item


def drill_down(
    session: Session,
    scope: Scope,
    include: Sequence[str],
    exclude: Sequence[str] = (),
    after: int = 0,
    limit: int = 50,
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of the recipients with these outcomes, in message id order, and the `after` of
    the next page (None on the last)."""
    rows = _page(session, scope, matching(include, exclude), after, limit)
    replies = _replies(session, [r.id for r in rows])
    items = [_item(r, replies.get(r.id)) for r in rows]
    return items, (rows[-1].id if len(rows) == limit else None)


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
HEADER = (
    "message_id",
    "contact_id",
    "phone",
    "name",
    "run_id",
    "step_id",
    "status",
    "skip_reason",
    "error_code",
    "error_meaning",
    "submitted_at",
    "sent_at",
    "delivered_at",
    "read_at",
    "failed_at",
    "replied_at",
    "clicked_at",
    "reply",
    "button",
)


def cell(value: Any) -> str:
    """A value as a CSV cell a spreadsheet shows and never runs. A phone number (+ and digits,
    which we validated) stays as it is."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    text = str(value)
    if text.startswith(FORMULA_START) and not (text[0] == "+" and text[1:].isdigit()):
        return "'" + text
    return text


def export_csv(
    session: Session, scope: Scope, include: Sequence[str] = ("targeted",), exclude: Sequence[str] = ()
) -> Iterator[str]:
    """The per-recipient ledger as CSV, a page at a time: memory stays flat however large the
    campaign. Checks the outcomes before the first line."""
    condition = matching(include, exclude)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(HEADER)
        after = 0
        while True:
            rows = _page(session, scope, condition, after, PAGE)
            replies = _replies(session, [r.id for r in rows])
            for row in rows:
                item = _item(row, replies.get(row.id))
                writer.writerow([cell(item[name]) for name in HEADER])
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            if len(rows) < PAGE:
                return
            after = rows[-1].id
            session.expire_all()

    return lines()


def retarget(
    session: Session,
    scope: Scope,
    name: str,
    include: Sequence[str],
    exclude: Sequence[str] = (),
    description: str | None = None,
    now: datetime | None = None,
) -> tuple[int, int]:
    """A new static segment of the contacts with these outcomes, filled in one statement;
    returns (segment id, members). The caller commits."""
    condition = matching(include, exclude)
    now = now or utcnow()
    segment = segments.create_segment(
        session, {"name": name, "kind": "static", "description": description}, now
    )
    contacts = (
        select(literal(segment.id, Id), Message.contact_id, literal(now, UTCDateTime()))
        .where(*scope.where(), condition, Message.contact_id.is_not(None))
        .distinct()
    )
    added = insert_ignore_select(
        session,
        SegmentMember,
        contacts,
        ["segment_id", "contact_id", "added_at"],
        ["segment_id", "contact_id"],
        "contact_id",
    )
    return segment.id, len(added)
