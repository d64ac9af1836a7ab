"""Inbound triggers: create, change, delete (checked), and the process-wide matcher index."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatman import revisions
from chatman.campaigns.models import Campaign
from chatman.contacts.fields import validate_timezone
from chatman.errors import Conflict, Invalid, NotFound
from chatman.flows.models import Flow
from chatman.messaging.models import InboundMessage, Template
from chatman.messaging.normalise import normalise
from chatman.triggers import semantic
from chatman.triggers.intents import OptVerdict
from chatman.triggers.matcher import Candidate, TriggerIndex, TriggerSpec, build_index, regex_error
from chatman.triggers.models import ACTIONS, MATCH_TYPES, Trigger
from chatman.triggers.optout import OptWords, opt_verdict
from chatman.triggers.phrases import Hit, prepare

REVISION = "triggers"
FIELDS = (
    "name",
    "match_type",
    "patterns",
    "examples",
    "example_threshold",
    "threshold",
    "priority",
    "active_from",
    "active_until",
    "timezone",
    "cooldown_s",
    "action",
    "reply_body",
    "reply_template_id",
    "campaign_id",
    "flow_id",
    "is_fallback",
    "enabled",
)
MAX_PATTERNS = 200
MAX_EXAMPLES = 50
MAX_EXAMPLE_LENGTH = 500
# A fuzzy trigger's lowest score when none is given: a phrase said with a typo or two, or with
# a short word left out, still matches ("wher is my ordr" for "where is my order"); one that
# shares a word or two does not ("my order was great" for "where is my order").
DEFAULT_FUZZY_THRESHOLD = 80.0
HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z")


def get_trigger(session: Session, trigger_id: int) -> Trigger:
    trigger = session.get(Trigger, trigger_id)
    if trigger is None:
        raise NotFound(f"trigger {trigger_id} not found")
    return trigger


def list_triggers(session: Session) -> list[Trigger]:
    return list(session.scalars(select(Trigger).order_by(Trigger.priority.desc(), Trigger.id)))


def save_trigger(session: Session, data: Mapping[str, Any], trigger_id: int | None = None) -> Trigger:
    trigger = (
        get_trigger(session, trigger_id) if trigger_id else Trigger(patterns=[], priority=0, cooldown_s=0)
    )
    with session.no_autoflush:  # the checks query: nothing half-checked is flushed
        for key in FIELDS:
            if key in data:
                setattr(trigger, key, data[key])
        trigger.is_fallback = bool(trigger.is_fallback)
        trigger.enabled = True if trigger.enabled is None else trigger.enabled
        if trigger.is_fallback and not trigger.match_type:
            trigger.match_type = "exact"  # unused: a fallback answers what nothing else matched
        if trigger.examples is None:
            trigger.examples = []
        if not trigger.match_type and trigger.examples and not trigger.patterns:
            trigger.match_type = "examples"  # described by example phrases alone
        if trigger.match_type == "fuzzy" and trigger.threshold is None and not trigger.is_fallback:
            trigger.threshold = DEFAULT_FUZZY_THRESHOLD
        _check(session, trigger)
    session.add(trigger)
    name = trigger.name  # read now: a failed flush expires it
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict.taken("trigger", name) from None
    revisions.bump(session, REVISION)
    return trigger


def delete_trigger(session: Session, trigger_id: int) -> None:
    get_trigger(session, trigger_id)
    session.execute(delete(Trigger).where(Trigger.id == trigger_id))
    revisions.bump(session, REVISION)


def _check(session: Session, t: Trigger) -> None:
    errors: dict[str, list[str]] = {}

    def fail(field: str, reason: str) -> None:
        errors.setdefault(field, []).append(reason)

    if not t.name or not t.name.strip():
        fail("name", "a trigger needs a name")
    if t.is_fallback:
        if t.match_type not in MATCH_TYPES:
            fail("match_type", f"one of {', '.join(MATCH_TYPES)}")
        if t.threshold is not None:
            fail("threshold", "only a fuzzy trigger has a threshold")
    elif t.match_type == "examples":
        if t.patterns:
            fail("patterns", 'a trigger of match type "examples" has example phrases, not patterns')
        if t.threshold is not None:
            fail("threshold", "only a fuzzy trigger has a threshold")
        if not t.examples:
            fail("examples", "give at least one example phrase")
    else:
        check_patterns(t.match_type, t.patterns, t.threshold, fail)
    _check_examples(t, fail)
    if (t.active_from is None) != (t.active_until is None):
        fail("active_from", "give both active_from and active_until, or neither")
    for field in ("active_from", "active_until"):
        value = getattr(t, field)
        if value is not None and not HHMM.match(str(value)):
            fail(field, f"{value!r} is not a time HH:MM")
    if t.timezone is not None:
        try:
            validate_timezone(t.timezone)
        except Invalid as error:
            fail("timezone", error.reason)
    if t.cooldown_s is None or t.cooldown_s < 0:
        fail("cooldown_s", "seconds, 0 or more")
    _check_action(session, t, fail)
    if errors:
        raise Invalid.many(errors)


def check_patterns(
    match_type: Any, patterns: Any, threshold: Any, fail: Callable[[str, str], None], field: str = ""
) -> None:
    """What the matcher needs of a match type and its patterns (a trigger's, or a rule's
    "replied with"); each problem goes to `fail(field, reason)`."""
    if match_type not in MATCH_TYPES or match_type == "examples":  # "examples" has no patterns
        fail(f"{field}match_type", f"one of {', '.join(t for t in MATCH_TYPES if t != 'examples')}")
    if not isinstance(patterns, list) or not patterns:
        fail(f"{field}patterns", "give at least one pattern (a list of strings)")
        patterns = []
    elif len(patterns) > MAX_PATTERNS:
        fail(f"{field}patterns", f"at most {MAX_PATTERNS} patterns per trigger")
    for i, pattern in enumerate(patterns):
        where = f"{field}patterns[{i}]"
        if not isinstance(pattern, str) or not pattern.strip():
            fail(where, "a pattern is a non-empty string")
        elif match_type == "regex":
            if (why := regex_error(pattern)) is not None:
                fail(where, f"invalid regex: {why}")
        elif match_type not in ("button",) and not normalise(pattern):
            fail(where, "nothing is left to match once case, punctuation and emoji are set aside")
    if match_type == "fuzzy":
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 < threshold <= 100:
            fail(f"{field}threshold", f"{threshold} is out of range: between 1 and 100")
    elif threshold is not None:
        fail(f"{field}threshold", "only a fuzzy trigger has a threshold")


def _check_examples(t: Trigger, fail: Callable[[str, str], None]) -> None:
    if not isinstance(t.examples, list):
        fail("examples", "a list of phrases")
        return
    if t.is_fallback and t.examples:
        fail("examples", "a fallback answers what nothing else matched: it has no example phrases")
    if len(t.examples) > MAX_EXAMPLES:
        fail("examples", f"at most {MAX_EXAMPLES} example phrases per trigger")
    for i, phrase in enumerate(t.examples):
        if not isinstance(phrase, str) or not normalise(prepare(phrase)):
            fail(f"examples[{i}]", "an example phrase needs words, not only punctuation or emoji")
        elif len(phrase) > MAX_EXAMPLE_LENGTH:
            fail(f"examples[{i}]", f"at most {MAX_EXAMPLE_LENGTH} characters")
    threshold = t.example_threshold
    if threshold is not None:
        if not t.examples:
            fail("example_threshold", "only a trigger with example phrases has an example threshold")
        elif (
            isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 1 <= threshold <= 100
        ):
            fail("example_threshold", f"{threshold} is out of range: between 1 and 100")


def add_example(session: Session, trigger_id: int, phrase: str) -> Trigger:
    """Teach a trigger one more way customers say it (an unmatched message, say); a phrase it
    already has (give or take case and punctuation) is not added twice."""
    trigger = get_trigger(session, trigger_id)
    known = {normalise(prepare(p)) for p in trigger.examples or []}
    if normalise(prepare(phrase)) in known:
        return trigger
    return save_trigger(session, {"examples": [*(trigger.examples or []), phrase.strip()]}, trigger_id)


def _check_action(session: Session, t: Trigger, fail) -> None:
    # Every record named must exist, whatever the action: the row keeps them all.
    for field, model, kind in (
        ("reply_template_id", Template, "template"),
        ("campaign_id", Campaign, "campaign"),
        ("flow_id", Flow, "flow"),
    ):
        record_id = getattr(t, field)
        if record_id is not None and session.get(model, record_id) is None:
            fail(field, f"{kind} {record_id} not found")
    if t.action not in ACTIONS:
        fail("action", f"one of {', '.join(ACTIONS)}")
        return
    if t.action == "reply":
        if not (t.reply_body and t.reply_body.strip()) and t.reply_template_id is None:
            fail("reply_body", "a reply needs reply_body (free text), reply_template_id, or both")
    elif t.action == "enroll":
        campaign = session.get(Campaign, t.campaign_id) if t.campaign_id is not None else None
        if campaign is None:
            fail("campaign_id", "enroll needs an existing triggered or drip campaign")
        elif campaign.kind not in ("triggered", "drip"):
            fail(
                "campaign_id",
                f"campaign {campaign.id} is {campaign.kind}; only a triggered or drip campaign enrolls",
            )
    elif t.action == "flow" and t.flow_id is None:
        fail("flow_id", "flow needs an existing flow_id")


def spec(t: Trigger) -> TriggerSpec:
    return TriggerSpec(
        id=t.id,
        match_type=t.match_type,
        patterns=tuple(t.patterns or ()),
        priority=t.priority,
        threshold=t.threshold,
        active_from=t.active_from,
        active_until=t.active_until,
        timezone=t.timezone,
        cooldown_s=t.cooldown_s,
        is_fallback=t.is_fallback,
        examples=tuple(t.examples or ()),
        example_threshold=t.example_threshold,
    )


_cache: dict[str, TriggerIndex] = {}
_lock = threading.Lock()


def trigger_index(session: Session) -> TriggerIndex:
    """The matcher index of the enabled triggers, rebuilt only when the trigger set changed
    (one key read per call) and shared by every request of this process."""
    database = str(session.get_bind().url)
    revision = revisions.current(session, REVISION)
    index = _cache.get(database)
    if index is not None and index.revision == revision:
        return index
    with _lock:
        index = _cache.get(database)
        if index is None or index.revision != revision:
            triggers = session.scalars(select(Trigger).where(Trigger.enabled.is_(True)))
            index = _cache[database] = build_index(
                [spec(t) for t in triggers], revision, semantic=semantic.available()
            )
        return index


@dataclass(frozen=True)
class Match:
    """Which trigger would answer a message now (cooldowns aside), and every candidate."""

    trigger_id: int | None
    fallback: bool
    candidates: list[Candidate]  # best first, active or not
    active: frozenset[int]  # of the candidates, those inside their active hours
    opt: OptVerdict = OptVerdict(None)  # an opt-out (or in) answers before any trigger


def match_message(
    session: Session,
    text: str | None,
    button_payload: str | None,
    now: datetime,
    words: OptWords | None = None,
) -> Match:
    index = trigger_index(session)
    opt = opt_verdict(words, index, text, button_payload) if words else OptVerdict(None)
    if opt.kind in ("opt_out", "opt_out_prompt"):
        return Match(None, False, [], frozenset(), opt)
    every = index.candidates(text, button_payload, complete=True)
    active = frozenset(c.trigger.id for c in every if c.trigger.active_at(now))
    found = [c for c in every if c.trigger.id in active]
    fallback = next((t for t in index.fallbacks if t.active_at(now)), None) if not found else None
    chosen = found[0].trigger.id if found else fallback.id if fallback else None
    return Match(chosen, fallback is not None, every, active, opt)


@dataclass(frozen=True)
class Unmatched:
    message: InboundMessage
    nearest: list[Hit]  # the triggers whose example phrases come closest, best first


def unmatched_messages(session: Session, limit: int = 50, before_id: int | None = None) -> list[Unmatched]:
    """Recent messages no trigger answered (the fallback did, or nothing), newest first, each
    with the triggers that came nearest: the phrases worth adding as examples."""
    query = (
        select(InboundMessage)
        .where(
            InboundMessage.body.is_not(None),
            or_(InboundMessage.handled_by == "fallback", InboundMessage.handled_by.is_(None)),
        )
        .order_by(InboundMessage.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(InboundMessage.id < before_id)
    index = trigger_index(session)
    return [Unmatched(m, nearest_triggers(index, m.body)) for m in session.scalars(query)]


def nearest_triggers(index: TriggerIndex, text: str, limit: int = 3) -> list[Hit]:
    if index.intents is None:
        return []
    norm = normalise(prepare(text))
    hits = index.intents.phrases.best(norm, text) if norm else []
    return [h for h in hits if isinstance(h.owner, int)][:limit]
