"""The send policy: may this message go to this contact now? One rule for every path.

Asked right before each group of messages leaves, by every send path (broadcast batches,
triggered starts, and the conversation outbox that carries trigger replies, flow prompts and
opt-out confirmations), and counted the same way by the launch pre-flight. It is written once,
as SQL, so that a count over a million contacts and the check of one group are the same rule.

- **DND**: nothing goes to a contact who is DND, except the one message that confirms their
  opt-out.
- **The 24-hour window**: free text goes out only within 24 hours of the contact's last
  message; outside it only an approved template may go (whether the template is approved is
  the campaign's check, made with its other ones).

Campaign messages also keep to:

- **the campaign's send window** (`send_window`): outside the hours and weekdays it allows,
  read on the contact's clock, a message is held until the window opens (`held`), never
  dropped;
- **the marketing cap**: at most N marketing messages per contact per calendar day (in the
  contact's timezone) or per rolling 24 hours. A campaign message counts unless its template
  is a utility or authentication one; conversation messages (replies, flows, confirmations)
  neither count nor are capped. A message over the cap is skipped as `capped` (`capped`).

Conversation messages answer what the contact just wrote: no window holds them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, case, literal, or_, select
from sqlalchemy.orm import Session

from chatman.config import Settings
from chatman.contacts.models import Contact
from chatman.dialects import lock_keys
from chatman.ledger import states
from chatman.ledger.models import Message
from chatman.messaging.send_window import SendWindow
from chatman.timeutils import run_instant

WINDOW = timedelta(hours=24)


def window_closed(now: datetime) -> ColumnElement[bool]:
    """SQL: the contact's 24-hour window is closed at `now` (or was never opened)."""
    return or_(Contact.last_inbound_at.is_(None), Contact.last_inbound_at < now - WINDOW)


def rules(
    now: datetime, free_text: bool, confirmation: bool = False
) -> list[tuple[ColumnElement[bool], str]]:
    """(SQL condition on the contact, the reason it blocks the send), in the order they apply."""
    blocking = [] if confirmation else [(Contact.dnd.is_(True), "dnd")]
    if free_text:
        blocking.append((window_closed(now), "outside_window"))
    return blocking


def blocked(
    session: Session,
    contact_ids: Iterable[int],
    now: datetime,
    free_text: bool,
    confirmation: bool = False,
) -> dict[int, str]:
    """Contacts among `contact_ids` who must not be sent this message now, with why; read
    from the database at this moment (a STOP that just arrived counts, and so does a contact
    deleted meanwhile: `contact_deleted`)."""
    ids = set(contact_ids)
    if not ids:
        return {}
    checks = rules(now, free_text, confirmation)
    reason = case(*checks, else_=literal(None)) if checks else literal(None)
    found = dict(session.execute(select(Contact.id, reason).where(Contact.id.in_(ids))).all())
    gone = dict.fromkeys(ids - set(found), "contact_deleted")
    return gone | {contact: why for contact, why in found.items() if why is not None}


def window_open(session: Session, contact_id: int, now: datetime) -> bool:
    """May free text go to this contact now? (A trigger replies in free text when it may.)"""
    closed = session.scalar(select(window_closed(now)).where(Contact.id == contact_id))
    return closed is not None and not closed


def held(rows: Iterable[tuple[int, str]], now: datetime, window: SendWindow | None) -> dict[int, datetime]:
    """Of `rows` (message id, the zone of its contact), those outside `window` at `now`, with
    when the window opens for each."""
    if window is None:
        return {}
    opens = {}
    for message_id, zone in rows:
        at = window.opens_at(now, zone)
        if at is not None:
            opens[message_id] = at
    return opens


CAP_PERIODS = ("day", "24h")


@dataclass(frozen=True)
class Cap:
    """At most `limit` marketing messages per contact per `period`: "day" (a calendar day on
    the contact's clock) or "24h" (rolling)."""

    limit: int
    period: str = "day"

    def since(self, now: datetime, zone: str) -> datetime:
        if self.period == "24h":
            return now - timedelta(hours=24)
        today = now.astimezone(ZoneInfo(zone)).date()
        return run_instant(datetime.combine(today, time()), zone)


def cap_of(settings: Settings) -> Cap | None:
    """The cap MARKETING_CAP sets, if any."""
    return Cap(settings.marketing_cap, settings.marketing_cap_period) if settings.marketing_cap else None


def capped(
    session: Session, rows: Sequence[tuple[int, int, str]], now: datetime, cap: Cap | None
) -> set[int]:
    """Of `rows` (message id, contact id, zone) of marketing messages about to be handed over,
    those that would take their contact over `cap`, counting marketing messages handed over
    before (however far they got, unless they failed) and the rows before it in `rows`.

    The contacts stay locked against other senders' checks until the transaction ends: the
    caller marks the rest handed (`sending.hand`, marketing) in the same transaction, so two
    batches sending to one contact at once cannot both pass the check.
    """
    if cap is None or not rows:
        return set()
    contacts = sorted({contact for _, contact, _ in rows})
    lock_keys(session, "marketing_cap", contacts)
    since = {message: cap.since(now, zone) for message, _, zone in rows}
    handed = defaultdict(list)
    for contact, at in session.execute(
        select(Message.contact_id, Message.handed_at).where(
            Message.contact_id.in_(contacts),
            Message.marketing.is_(True),
            Message.handed_at >= min(since.values()),
            Message.status != states.FAILED,
        )
    ):
        handed[contact].append(at)
    passed: Counter[int] = Counter()
    over = set()
    for message, contact, _ in rows:
        if passed[contact] + sum(at >= since[message] for at in handed[contact]) >= cap.limit:
            over.add(message)
        else:
            passed[contact] += 1
    return over
