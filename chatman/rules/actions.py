"""Running a rule's actions for every message it fired for in one evaluation, set by set.

A job evaluates hundreds of messages: its attribute actions are worked out in memory on the
contacts, read once and locked in id order (so no increment is lost to a concurrent writer),
and written in one statement; segment and DND actions are one statement per action for all
the rule's contacts; only actions that start something (a campaign, a flow, a webhook) go
contact by contact. Each outcome is kept per firing: an action that cannot succeed for one
contact (a number attribute that holds a string) fails for that contact only, one that
cannot succeed at all (a segment deleted since) fails for all, and the others go on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from chatman.campaigns import drips
from chatman.campaigns.models import Campaign
from chatman.campaigns.triggered import start_for_contact
from chatman.contacts import dnd, segments
from chatman.contacts.attributes import attribute_types
from chatman.contacts.fields import coerce_attribute
from chatman.contacts.models import Contact
from chatman.errors import DomainError, Invalid
from chatman.flows import engine as flows
from chatman.ledger.models import Message
from chatman.messaging.rendering import CONTACT_FIELDS, placeholders, render
from chatman.outgoing import queue_delivery

ATTRIBUTE_ACTIONS = ("set_attribute", "unset_attribute", "increment_attribute")
GROUP_ACTIONS = ("add_to_segment", "remove_from_segment", "set_dnd", "clear_dnd")


class ActionFailed(DomainError):
    pass


@dataclass
class Reactions:
    """What the contact sent back to one message: buttons tapped, and each reply."""

    taps: set[str] = field(default_factory=set)  # payloads and texts
    replies: list[tuple[str | None, str | None]] = field(default_factory=list)  # (text, payload)
    buttons: list[str] = field(default_factory=list)  # what each tapped button said

    @property
    def last_reply(self) -> str | None:
        return next((text for text, _ in reversed(self.replies) if text), None)


@dataclass
class Fired:
    """A rule firing for one message in this evaluation, and what each of its actions did."""

    message: Message
    reactions: Reactions
    outcomes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Started:
    """What is to go out once the evaluation commits."""

    sends: list[int] = field(default_factory=list)  # conversation messages (a flow's)
    runs: list[tuple[int, int]] = field(default_factory=list)  # (run, message) of started campaigns
    deliveries: list[int] = field(default_factory=list)  # outgoing webhook deliveries


class Contacts:
    """The contacts of an evaluation's firings: locked in id order and read once; attribute
    changes are made here and written together."""

    def __init__(self, session: Session, contact_ids: Sequence[int]) -> None:
        self.session = session
        rows = session.execute(
            select(Contact.id, Contact.attributes, *(getattr(Contact, f) for f in CONTACT_FIELDS))
            .where(Contact.id.in_(sorted(set(contact_ids))))
            .order_by(Contact.id)
            .with_for_update(key_share=True)
        ).all()
        self.attributes = {row.id: dict(row.attributes or {}) for row in rows}
        self.fields = {row.id: {f: getattr(row, f) for f in CONTACT_FIELDS} for row in rows}
        self.changed: set[int] = set()
        self._types: dict[str, str] | None = None

    def types(self) -> dict[str, str]:
        if self._types is None:
            self._types = attribute_types(self.session)
        return self._types

    def write(self, now: datetime) -> None:
        if not self.changed:
            return
        table = Contact.__table__
        self.session.connection().execute(
            update(table)
            .where(table.c.id == bindparam("_id"))
            .values(attributes=bindparam("_attributes"), updated_at=now),
            [{"_id": cid, "_attributes": self.attributes[cid]} for cid in sorted(self.changed)],
        )
        self.changed.clear()


def run(
    session: Session,
    rule: Any,
    fired: Sequence[Fired],
    contacts: Contacts,
    started: Started,
    now: datetime,
) -> None:
    """Run the rule's actions, in order, for these firings; each firing's outcomes are
    appended to it. The caller writes the contacts' attributes (`contacts.write`), once for
    all its rules, and commits."""
    for action in rule.actions:
        kind = action["type"]
        if kind in ATTRIBUTE_ACTIONS:
            change = _attribute_change(action, contacts)
            for f in fired:
                _outcome(f, kind, change, f)
        elif kind in GROUP_ACTIONS:
            ids = sorted({f.message.contact_id for f in fired})
            try:
                with session.begin_nested():
                    _group(session, action, ids, now)
                outcome = {"type": kind, "status": "done"}
            except DomainError as error:
                outcome = {"type": kind, "status": "failed", "reason": error.message[:500]}
            for f in fired:
                f.outcomes.append(dict(outcome))
        else:
            contacts.write(now)  # what it starts may read the attributes just set
            for f in fired:
                _outcome(f, kind, _start, session, action, rule, f, started, now)


def _outcome(fired: Fired, kind: str, do: Callable[..., None], *args: Any) -> None:
    try:
        do(*args)
        fired.outcomes.append({"type": kind, "status": "done"})
    except DomainError as error:
        fired.outcomes.append({"type": kind, "status": "failed", "reason": error.message[:500]})


def _attribute_change(action: Mapping[str, Any], contacts: Contacts) -> Callable[[Fired], None]:
    """The in-memory change one attribute action makes to a firing's contact."""
    kind, name = action["type"], action["attribute"]

    def defined() -> str:
        type_ = contacts.types().get(name)
        if type_ is None:
            raise ActionFailed(f"attribute {name!r} is no longer defined")
        return type_

    def change(fired: Fired) -> None:
        cid = fired.message.contact_id
        attributes = contacts.attributes.get(cid)
        if attributes is None:
            raise ActionFailed(f"contact {cid} no longer exists")
        type_ = defined()
        if kind == "unset_attribute":
            if attributes.pop(name, None) is not None:
                contacts.changed.add(cid)
            return
        if kind == "increment_attribute":
            current = attributes.get(name, 0)
            if type_ != "number" or isinstance(current, bool) or not isinstance(current, int | float):
                raise ActionFailed(f"{name} holds {current!r}, not a number")
            attributes[name] = current + action["by"]
        else:
            value = action["value"]
            if isinstance(value, str) and placeholders(value):
                value = render(value, _values(contacts, fired), missing="")
            try:
                attributes[name] = coerce_attribute(value, type_, name)
            except Invalid as error:
                raise ActionFailed(f"{name}: {error.reason}") from None
        contacts.changed.add(cid)

    return change


def _values(contacts: Contacts, fired: Fired) -> dict[str, Any]:
    cid, got = fired.message.contact_id, fired.reactions
    return {
        **contacts.attributes[cid],
        **contacts.fields[cid],
        "reply": got.last_reply,
        "button": got.buttons[-1] if got.buttons else None,
    }


def _group(session: Session, action: Mapping[str, Any], contact_ids: list[int], now: datetime) -> None:
    kind = action["type"]
    if kind == "add_to_segment":
        segments.add_members(session, action["segment_id"], contact_ids, now)
    elif kind == "remove_from_segment":
        segments.remove_members(session, action["segment_id"], contact_ids)
    elif kind == "set_dnd":
        dnd.set_dnd(session, contact_ids, action["reason"], now)
    elif kind == "clear_dnd":
        dnd.clear_dnd(session, contact_ids, now)


def _start(
    session: Session, action: Mapping[str, Any], rule: Any, fired: Fired, started: Started, now: datetime
) -> None:
    """An action that starts something, for one contact, in a savepoint: a failure undoes
    its own changes only."""
    with session.begin_nested():
        _start_one(session, action, rule, fired, started, now)
        session.flush()


def _start_one(
    session: Session, action: Mapping[str, Any], rule: Any, fired: Fired, started: Started, now: datetime
) -> None:
    kind, contact_id = action["type"], fired.message.contact_id
    if kind == "start_campaign":
        _start_campaign(session, action["campaign_id"], rule, fired, started, now)
    elif kind == "start_flow":
        started.sends += flows.start(session, action["flow_id"], contact_id, now)
    elif kind == "call_webhook":
        started.deliveries.append(_call_webhook(session, action["endpoint_id"], rule, fired, now))


def _start_campaign(
    session: Session, campaign_id: int, rule: Any, fired: Fired, started: Started, now: datetime
) -> None:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise ActionFailed(f"campaign {campaign_id} no longer exists")
    if campaign.status != "running":
        raise ActionFailed(f"campaign {campaign.name!r} is {campaign.status}, not running")
    contact_id = fired.message.contact_id
    if campaign.kind == "drip":
        if not drips.enroll(session, campaign_id, [contact_id], "rule", now):
            raise ActionFailed(f"the contact is already in drip {campaign.name!r} (or may not enter again)")
        return
    context = {"rule_id": rule.id, "message_id": fired.message.id}
    # Keyed on the rule and message: a firing retried after a crash starts nothing twice.
    key = f"rule:{rule.id}:{fired.message.id}"
    begun = start_for_contact(session, campaign_id, contact_id, key, context, now)
    if begun is not None:
        started.runs.append(begun)


def _call_webhook(session: Session, endpoint_id: int, rule: Any, fired: Fired, now: datetime) -> int:
    """Queue the event, the rule and the contact for the endpoint; workers send it after the
    commit (EndpointUnavailable, a DomainError, when it was deleted or disabled)."""
    message = fired.message
    contact = session.get(Contact, message.contact_id, populate_existing=True)  # the attributes just set
    got = fired.reactions
    payload = {
        "rule": {"id": rule.id, "name": rule.name},
        "campaign": {"id": message.campaign_id, "run_id": message.run_id, "step_id": message.step_id},
        "message": {
            "id": message.id,
            "status": message.status,
            "error_code": message.error_code,
            "replied": message.replied_at is not None,
            "reply": got.last_reply,
            "buttons": got.buttons,
        },
        "contact": {
            "id": contact.id,
            "phone": contact.phone,
            "name": contact.name,
            "attributes": contact.attributes or {},
        },
        "fired_at": now.isoformat(),
    }
    return queue_delivery(session, endpoint_id, "rule.fired", payload, now)
