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
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import delete, exists, or_, select, update
from sqlalchemy.orm import Session

from chatman.dialects import insert_ignore, insert_ignore_returning, lock_keys
from chatman.ledger import states
from chatman.ledger.models import Message
from chatman.messaging.models import InboundMessage
from chatman.rules import actions
from chatman.rules.actions import Contacts, Fired, Reactions, Started
from chatman.rules.definition import waits
from chatman.rules.models import Rule, RuleFiring, RuleWait
from chatman.timeutils import utcnow
from chatman.triggers.matcher import TriggerIndex, TriggerSpec, build_index


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


def skipped_with_rules(session: Session, run_id: int) -> list[int]:
    """The run's skipped messages that an enabled rule looks at."""
    return list(
        session.scalars(
            select(Message.id)
            .where(Message.run_id == run_id, Message.status == states.SKIPPED, _has_rules())
            .order_by(Message.id)
        )
    )


def started(message: Message) -> datetime | None:
    """When a waiting condition starts counting: the message's `sent`, or the first later
    status when the provider never reported `sent`."""
    return message.sent_at or message.delivered_at or message.read_at


@lru_cache(maxsize=256)
def _pattern_index(match_type: str, patterns: tuple[str, ...], threshold: float | None) -> TriggerIndex:
    # "replied with" means the rule's own words: no chatter or example phrases in between
    spec = TriggerSpec(id=0, match_type=match_type, patterns=patterns, threshold=threshold)
    return build_index([spec], understand=False)


def _waited(message: Message, hours: float, now: datetime, then: datetime | None) -> bool:
    """The wait has run out and `then` (a reply, a read) did not come before its end."""
    start = started(message)
    if start is None:
        return False
    deadline = start + timedelta(hours=hours)
    return now >= deadline and (then is None or then > deadline)


def holds(condition: Mapping[str, Any], message: Message, reactions: Reactions, now: datetime) -> bool:
    if "all" in condition:
        return all(holds(c, message, reactions, now) for c in condition["all"])
    if "any" in condition:
        return any(holds(c, message, reactions, now) for c in condition["any"])
    if "not" in condition:
        return not holds(condition["not"], message, reactions, now)
    if "no_reply_within" in condition:
        return _waited(message, condition["no_reply_within"], now, message.replied_at)
    if "not_read_within" in condition:
        return _waited(message, condition["not_read_within"], now, message.read_at)
    if "skipped" in condition:
        reason = condition["skipped"]
        return message.status == states.SKIPPED and (reason is True or message.skip_reason == reason)
    if "replied" in condition:
        pattern = condition["replied"]
        if pattern is True:
            return message.replied_at is not None
        index = _pattern_index(pattern["match_type"], tuple(pattern["patterns"]), pattern.get("threshold"))
        return any(index.candidates(text, payload) for text, payload in reactions.replies)
    if "tapped" in condition:
        return condition["tapped"] in reactions.taps
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


def _event(message: Message, reactions: Reactions) -> str:
    parts = (
        [message.status]
        + (["replied"] if message.replied_at else [])
        + [f"tapped:{t}" for t in sorted(reactions.taps)]
    )
    return ", ".join(parts)[:64]


def _reactions(session: Session, message_ids: list[int]) -> dict[int, Reactions]:
    found: dict[int, Reactions] = defaultdict(Reactions)
    for reply_to, body, payload, text in session.execute(
        select(
            InboundMessage.reply_to_id,
            InboundMessage.body,
            InboundMessage.button_payload,
            InboundMessage.button_text,
        )
        .where(InboundMessage.reply_to_id.in_(message_ids))
        .order_by(InboundMessage.id)
    ):
        found[reply_to].taps |= {t for t in (payload, text) if t}
        found[reply_to].replies.append((body or text, payload))
        if text or payload:
            found[reply_to].buttons.append(text or payload)
    return found


@dataclass
class Evaluation(Started):
    fired: int = 0


def evaluate(session: Session, message_ids: Sequence[int], now: datetime | None = None) -> Evaluation:
    """Fire the rules whose condition these messages now meet and that have not fired for them;
    note when each waiting condition not met yet runs out, for the clock. The caller commits,
    then sends what the result lists.

    Exactly once: the contacts are locked (in id order) before the firings are checked and
    written, so a job on the same message waits for this one and then finds it fired; the
    firing rows, unique per (rule, message), are written with the actions' changes."""
    now = now or utcnow()
    result = Evaluation()
    messages = list(
        session.scalars(select(Message).where(Message.id.in_(list(message_ids))).order_by(Message.id))
    )
    if not messages:
        return result
    rules: dict[int, list[Rule]] = defaultdict(list)
    for rule in session.scalars(
        select(Rule)
        .where(Rule.campaign_id.in_({m.campaign_id for m in messages}), Rule.enabled.is_(True))
        .order_by(Rule.id)
    ):
        rules[rule.campaign_id].append(rule)
    ids = [m.id for m in messages]
    reactions = _reactions(session, ids)
    fired_before = _fired(session, ids)
    due, candidates = [], []
    for message in messages:
        if message.contact_id is None:  # erased
            continue
        got = reactions[message.id]
        for rule in rules[message.campaign_id]:
            if rule.step_id not in (None, message.step_id) or (rule.id, message.id) in fired_before:
                continue
            if holds(rule.condition, message, got, now):
                candidates.append((rule, message, got))
            else:
                due += _deadlines(rule, message, now)
    if due:
        insert_ignore(session, RuleWait, due, ["rule_id", "message_id", "due_at"])
    for _ in range(3):
        if not candidates:
            break
        try:
            with session.begin_nested():
                _fire(session, candidates, result, now)
            break
        except _FiredMeanwhile:  # another job fired some of them first: the rest, again
            done = _fired(session, sorted({m.id for _, m, _ in candidates}))
            candidates = [c for c in candidates if (c[0].id, c[1].id) not in done]
    return result


class _FiredMeanwhile(Exception):
    pass


def _fired(session: Session, message_ids: Sequence[int]) -> set[tuple[int, int]]:
    query = select(RuleFiring.rule_id, RuleFiring.message_id)
    return set(session.execute(query.where(RuleFiring.message_id.in_(list(message_ids)))))


def _fire(
    session: Session, candidates: list[tuple[Rule, Message, Reactions]], result: Evaluation, now: datetime
) -> None:
    contact_ids = sorted({m.contact_id for _, m, _ in candidates})
    lock_keys(session, "rule-contacts", contact_ids)  # SQLite: the write lock, before reading on
    contacts = Contacts(session, contact_ids)  # PostgreSQL: their rows, in id order
    # Checked again under the locks: a job that held them may have fired some meanwhile.
    done = _fired(session, sorted({m.id for _, m, _ in candidates}))
    by_rule: dict[int, tuple[Rule, list[Fired]]] = {}
    for rule, message, got in candidates:
        if (rule.id, message.id) not in done:
            by_rule.setdefault(rule.id, (rule, []))[1].append(Fired(message, got))
    started = Started()
    rows = []
    for rule, fired in by_rule.values():
        actions.run(session, rule, fired, contacts, started, now)
        rows += [
            {
                "rule_id": rule.id,
                "message_id": f.message.id,
                "contact_id": f.message.contact_id,
                "event": _event(f.message, f.reactions),
                "status": "failed" if any(o["status"] == "failed" for o in f.outcomes) else "done",
                "outcomes": f.outcomes,
                "fired_at": now,
            }
            for f in fired
        ]
    contacts.write(now)
    if len(insert_ignore_returning(session, RuleFiring, rows, ["rule_id", "message_id"], "id")) < len(rows):
        raise _FiredMeanwhile  # the savepoint undoes this attempt's actions
    result.sends += started.sends
    result.runs += started.runs
    result.deliveries += started.deliveries
    result.fired += len(rows)


def _deadlines(rule: Rule, message: Message, now: datetime) -> list[dict[str, Any]]:
    """The rule's waits on this message that run out later: the clock evaluates it again then."""
    start = started(message)
    if start is None:
        return []
    return [
        {"rule_id": rule.id, "message_id": message.id, "due_at": start + timedelta(hours=hours)}
        for _, hours in waits(rule.condition)
        if start + timedelta(hours=hours) > now
    ]


@dataclass
class DryRun:
    would_fire: int
    fired_before: int
    sample: list[tuple[int, int]]  # (contact, message), the first few


def dry_run(session: Session, rule: Rule, now: datetime | None = None, sample: int = 100) -> DryRun:
    """Who the rule would fire for if it ran now, enabled or not (a rule fires once per
    message: those it already fired for are counted apart). Changes nothing."""
    now = now or utcnow()
    result = DryRun(0, 0, [])
    query = select(Message).where(Message.campaign_id == rule.campaign_id, Message.contact_id.is_not(None))
    if rule.step_id is not None:
        query = query.where(Message.step_id == rule.step_id)
    after = 0
    while batch := list(session.scalars(query.where(Message.id > after).order_by(Message.id).limit(1000))):
        after = batch[-1].id
        ids = [m.id for m in batch]
        reactions = _reactions(session, ids)
        mine = (RuleFiring.rule_id == rule.id) & RuleFiring.message_id.in_(ids)
        fired = set(session.scalars(select(RuleFiring.message_id).where(mine)))
        for message in batch:
            if message.id in fired:
                result.fired_before += 1
            elif holds(rule.condition, message, reactions[message.id], now):
                result.would_fire += 1
                if len(result.sample) < sample:
                    result.sample.append((message.contact_id, message.id))
        session.expunge_all()  # a large campaign is read in batches, never held in memory
    return result


# A clock that took due waits holds them this long: a job that died leaves them to the next.
WAIT_CLAIM = timedelta(minutes=10)


def claim_due_waits(session: Session, now: datetime, limit: int) -> list[tuple[int, int]]:
    """Take up to `limit` waits whose time has run out, found by the due-time index:
    [(wait id, message id)]. Two clocks never take the same row. The caller commits."""
    free = or_(RuleWait.claimed_until.is_(None), RuleWait.claimed_until <= now)
    ids = list(
        session.scalars(
            select(RuleWait.id).where(RuleWait.due_at <= now, free).order_by(RuleWait.due_at).limit(limit)
        )
    )
    if not ids:
        return []
    return [
        (wait_id, message_id)
        for wait_id, message_id in session.execute(
            update(RuleWait)
            .where(RuleWait.id.in_(ids), free)
            .values(claimed_until=now + WAIT_CLAIM)
            .returning(RuleWait.id, RuleWait.message_id),
            execution_options={"synchronize_session": False},
        )
    ]


def forget_waits(session: Session, wait_ids: Sequence[int]) -> None:
    """Evaluated: these waits are done with."""
    if wait_ids:
        session.execute(delete(RuleWait).where(RuleWait.id.in_(list(wait_ids))))
