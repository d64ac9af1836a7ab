"""Evaluating rules against what campaign messages did, and running their actions.

A rule's condition is read from the message's state as it is now (its timestamps, its reply,
the buttons tapped on it), not from the callback that woke the evaluation: callbacks that
arrive twice or out of order leave the same state, and the firing's unique key (rule,
message) lets each rule fire once per message. A firing and its actions' changes commit
together; an action that cannot succeed (a segment deleted since, a value the attribute's
type refuses) is recorded as failed with why, and the others go on.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session

from chatman.contacts import dnd, segments
from chatman.contacts.crud import get_contact, update_contact
from chatman.dialects import insert_ignore_returning
from chatman.errors import DomainError
from chatman.ledger import states
from chatman.ledger.models import Message
from chatman.messaging.models import InboundMessage
from chatman.rules.models import Rule, RuleFiring
from chatman.timeutils import utcnow


def _has_rules():
    return exists().where(
        Rule.campaign_id == Message.campaign_id,
        Rule.enabled.is_(True),
        or_(Rule.step_id.is_(None), Rule.step_id == Message.step_id),
    )


# The states a status condition looks at.
MOVED = (states.SENT, states.DELIVERED, states.READ, states.FAILED)


def messages_with_rules(
    session: Session,
    sids: Sequence[str] = (),
    ids: Sequence[int] = (),
    statuses: Sequence[str] | None = None,
) -> list[int]:
    """Of these messages (by provider sid or id; only those now in `statuses` if given), those
    an enabled rule looks at: one indexed query, so campaigns without rules cost next to nothing."""
    if not sids and not ids:
        return []
    query = select(Message.id).where(
        Message.provider_sid.in_(list(sids)) if sids else Message.id.in_(list(ids)), _has_rules()
    )
    if statuses is not None:
        query = query.where(Message.status.in_(list(statuses)))
    return list(session.scalars(query.order_by(Message.id)))


def holds(condition: Mapping[str, Any], message: Message, taps: set[str]) -> bool:
    if "all" in condition:
        return all(holds(c, message, taps) for c in condition["all"])
    if "any" in condition:
        return any(holds(c, message, taps) for c in condition["any"])
    if "replied" in condition:
        return message.replied_at is not None
    if "tapped" in condition:
        return condition["tapped"] in taps
    status = condition["status"]
    if status == "failed":
        codes = condition.get("error_codes")
        return message.status == "failed" and (codes is None or (message.error_code or "") in codes)
    reached = {
        "sent": (message.sent_at, message.delivered_at, message.read_at),
        "delivered": (message.delivered_at, message.read_at),
        "read": (message.read_at,),
    }[status]
    return any(at is not None for at in reached)


def _event(message: Message, taps: set[str]) -> str:
    parts = (
        [message.status] + (["replied"] if message.replied_at else []) + [f"tapped:{t}" for t in sorted(taps)]
    )
    return ", ".join(parts)[:64]


def evaluate(session: Session, message_ids: Sequence[int], now: datetime | None = None) -> int:
    """Fire the rules whose condition these messages now meet and that have not fired for them;
    returns how many fired. The caller commits."""
    now = now or utcnow()
    messages = list(session.scalars(select(Message).where(Message.id.in_(list(message_ids)))))
    if not messages:
        return 0
    rules: dict[int, list[Rule]] = defaultdict(list)
    for rule in session.scalars(
        select(Rule)
        .where(Rule.campaign_id.in_({m.campaign_id for m in messages}), Rule.enabled.is_(True))
        .order_by(Rule.id)
    ):
        rules[rule.campaign_id].append(rule)
    taps: dict[int, set[str]] = defaultdict(set)
    for reply_to, payload, text in session.execute(
        select(InboundMessage.reply_to_id, InboundMessage.button_payload, InboundMessage.button_text).where(
            InboundMessage.reply_to_id.in_([m.id for m in messages])
        )
    ):
        taps[reply_to] |= {t for t in (payload, text) if t}
    fired = 0
    for message in messages:
        if message.contact_id is None:  # erased
            continue
        for rule in rules[message.campaign_id]:
            if rule.step_id not in (None, message.step_id) or not holds(
                rule.condition, message, taps[message.id]
            ):
                continue
            row = {
                "rule_id": rule.id,
                "message_id": message.id,
                "contact_id": message.contact_id,
                "event": _event(message, taps[message.id]),
                "status": "running",
                "outcomes": [],
                "fired_at": now,
            }
            if not insert_ignore_returning(session, RuleFiring, [row], ["rule_id", "message_id"], "id"):
                continue  # fired before
            outcomes = [_run(session, action, message.contact_id, now) for action in rule.actions]
            session.execute(
                update(RuleFiring)
                .where(RuleFiring.rule_id == rule.id, RuleFiring.message_id == message.id)
                .values(
                    outcomes=outcomes,
                    status="failed" if any(o["status"] == "failed" for o in outcomes) else "done",
                ),
                execution_options={"synchronize_session": False},
            )
            fired += 1
    return fired


def _run(session: Session, action: Mapping[str, Any], contact_id: int, now: datetime) -> dict[str, Any]:
    """One action, in a savepoint: a failure undoes its own changes only."""
    try:
        with session.begin_nested():
            _do(session, action, contact_id, now)
        return {"type": action["type"], "status": "done"}
    except DomainError as error:
        return {"type": action["type"], "status": "failed", "reason": error.message[:500]}


def _do(session: Session, action: Mapping[str, Any], contact_id: int, now: datetime) -> None:
    kind = action["type"]
    if kind in ("set_attribute", "unset_attribute"):
        value = action["value"] if kind == "set_attribute" else None
        update_contact(session, contact_id, {"attributes": {action["attribute"]: value}}, None, now)
    elif kind == "increment_attribute":
        name = action["attribute"]
        current = (get_contact(session, contact_id).attributes or {}).get(name, 0)
        if isinstance(current, bool) or not isinstance(current, int | float):
            raise ActionFailed(f"{name} holds {current!r}, not a number")
        update_contact(session, contact_id, {"attributes": {name: current + action["by"]}}, None, now)
    elif kind == "add_to_segment":
        segments.add_members(session, action["segment_id"], [contact_id], now)
    elif kind == "remove_from_segment":
        segments.remove_members(session, action["segment_id"], [contact_id])
    elif kind == "set_dnd":
        dnd.set_dnd(session, [contact_id], action["reason"], now)
    elif kind == "clear_dnd":
        dnd.clear_dnd(session, [contact_id], now)
    session.flush()


class ActionFailed(DomainError):
    pass
