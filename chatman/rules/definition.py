"""A rule's condition and actions, as the API gives them, checked before they are kept.

Condition (on what a campaign message did; combine with all / any):
    {"status": "sent" | "delivered" | "read" | "failed", "error_codes": ["63016"]}  (reached;
        read counts as delivered, codes go with failed)
    {"replied": true}            the contact answered it
    {"replied": {"match_type": "keyword", "patterns": ["price"]}}  with words a trigger would
        match (any match type of triggers, fuzzy with a threshold)
    {"tapped": "Not interested"} a button, by its payload or text
    {"no_reply_within": 24}, {"not_read_within": 24}   hours (1 to 720) counted from the
        message's `sent`; evaluated by the clock when the time runs out
    {"skipped": true} or {"skipped": "dnd"}   not sent, for any reason or this one
    {"all": [...]}, {"any": [...]}, {"not": {...}}

Actions, run in order:
    {"type": "set_attribute", "attribute": "tier", "value": "warm"}
    {"type": "unset_attribute", "attribute": "tier"}
    {"type": "increment_attribute", "attribute": "score", "by": 1}   (a number attribute)
    {"type": "add_to_segment" | "remove_from_segment", "segment_id": 3}  (a static segment)
    {"type": "set_dnd", "reason": "undeliverable"}, {"type": "clear_dnd"}
    {"type": "start_campaign", "campaign_id": 7}  a triggered campaign sends its message to the
        contact (a follow-up, under the send policy: window, DND, caps); a drip enrolls them
    {"type": "start_flow", "flow_id": 2}
    {"type": "call_webhook", "endpoint_id": 1}    POST the event, rule and contact, signed
Values of set_attribute may use placeholders: the contact's fields and attributes ({{name}}),
{{reply}} (the reply's text) and {{button}} (the button tapped).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from chatman.campaigns.models import Campaign
from chatman.contacts.attributes import attribute_types, prepare_attributes
from chatman.contacts.models import Segment
from chatman.errors import Invalid
from chatman.flows.models import Flow
from chatman.messaging.rendering import CONTACT_FIELDS, placeholders
from chatman.outgoing.models import WebhookEndpoint
from chatman.triggers.crud import DEFAULT_FUZZY_THRESHOLD, check_patterns

STATUSES = ("sent", "delivered", "read", "failed")
ACTIONS = (
    "set_attribute",
    "unset_attribute",
    "increment_attribute",
    "add_to_segment",
    "remove_from_segment",
    "set_dnd",
    "clear_dnd",
    "start_campaign",
    "start_flow",
    "call_webhook",
)
# What a value's placeholders may name besides the contact's fields and attributes.
EVENT_VALUES = ("reply", "button")
MAX_DEPTH = 4
WAITS = ("no_reply_within", "not_read_within")
MAX_WAIT_HOURS = 720
MAX_ACTIONS = 20


def waits(condition: Mapping[str, Any]) -> list[tuple[str, float]]:
    """The waiting conditions in a condition tree: (kind, hours)."""
    found = []
    parts = condition.get("all", []) + condition.get("any", [])
    parts += [condition["not"]] if "not" in condition else []
    for part in parts:
        found += waits(part)
    return found + [(kind, condition[kind]) for kind in WAITS if kind in condition]


def parse_condition(spec: Any, field: str = "condition", depth: int = 0) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or len(spec) == 0:
        raise Invalid(field, 'a condition, e.g. {"status": "read"}, {"replied": true} or {"tapped": "Yes"}')
    for combinator in ("all", "any"):
        if combinator in spec:
            parts = spec[combinator]
            if len(spec) != 1 or not isinstance(parts, list) or not parts:
                raise Invalid(field, f"{combinator}: a non-empty list of conditions, alone in its object")
            if depth >= MAX_DEPTH:
                raise Invalid(field, f"conditions nest at most {MAX_DEPTH} deep")
            return {
                combinator: [
                    parse_condition(p, f"{field}.{combinator}[{i}]", depth + 1) for i, p in enumerate(parts)
                ]
            }
    if "not" in spec:
        if len(spec) != 1:
            raise Invalid(field, "not: one condition, alone in its object")
        if depth >= MAX_DEPTH:
            raise Invalid(field, f"conditions nest at most {MAX_DEPTH} deep")
        return {"not": parse_condition(spec["not"], f"{field}.not", depth + 1)}
    for wait in WAITS:
        if wait in spec:
            hours = spec[wait]
            if (
                len(spec) != 1
                or isinstance(hours, bool)
                or not isinstance(hours, int | float)
                or not 1 <= hours <= MAX_WAIT_HOURS
            ):
                raise Invalid(f"{field}.{wait}", f"hours from the message's sending, 1 to {MAX_WAIT_HOURS}")
            return {wait: hours}
    if set(spec) == {"skipped"}:
        reason = spec["skipped"]
        if reason is not True and not (isinstance(reason, str) and 1 <= len(reason) <= 32):
            raise Invalid(f"{field}.skipped", 'true (any reason) or a reason, e.g. "dnd" or "outside_window"')
        return {"skipped": reason}
    if "status" in spec:
        if set(spec) - {"status", "error_codes"} or spec["status"] not in STATUSES:
            raise Invalid(f"{field}.status", f"one of {', '.join(STATUSES)} (with error_codes for failed)")
        codes = spec.get("error_codes")
        if codes is not None:
            if spec["status"] != "failed":
                raise Invalid(f"{field}.error_codes", "error codes go with status: failed")
            if not isinstance(codes, list) or not codes or not all(isinstance(c, str | int) for c in codes):
                raise Invalid(f"{field}.error_codes", 'a list of provider error codes, e.g. ["63016"]')
            return {"status": "failed", "error_codes": sorted({str(c) for c in codes})}
        return {"status": spec["status"]}
    if set(spec) == {"replied"}:
        replied = spec["replied"]
        if replied is True:
            return {"replied": True}
        if not isinstance(replied, Mapping) or set(replied) - {"match_type", "patterns", "threshold"}:
            raise Invalid(
                f"{field}.replied",
                'true, or words to match: {"match_type": "keyword", "patterns": ["price"]} '
                '(for no reply, use {"no_reply_within": hours})',
            )
        pattern = dict(replied)
        if pattern.get("match_type") == "fuzzy":
            pattern.setdefault("threshold", DEFAULT_FUZZY_THRESHOLD)
        errors: dict[str, list[str]] = {}
        check_patterns(
            pattern.get("match_type"),
            pattern.get("patterns"),
            pattern.get("threshold"),
            lambda where, why: errors.setdefault(where, []).append(why),
            f"{field}.replied.",
        )
        if errors:
            raise Invalid.many(errors)
        return {"replied": pattern}
    if set(spec) == {"tapped"}:
        if not isinstance(spec["tapped"], str) or not 1 <= len(spec["tapped"]) <= 256:
            raise Invalid(f"{field}.tapped", "the payload or text of the button")
        return {"tapped": spec["tapped"]}
    raise Invalid(
        field,
        f"unknown condition {sorted(spec)}: use status, replied, tapped, skipped, "
        f"{', '.join(WAITS)}, all, any or not",
    )


def parse_actions(session: Session, specs: Any, field: str = "actions") -> list[dict[str, Any]]:
    if not isinstance(specs, list) or not specs:
        raise Invalid(
            field, 'a list of actions, e.g. [{"type": "set_attribute", "attribute": "tier", "value": "warm"}]'
        )
    if len(specs) > MAX_ACTIONS:
        raise Invalid(field, f"at most {MAX_ACTIONS} actions")
    return [_action(session, spec, f"{field}[{i}]") for i, spec in enumerate(specs)]


def _action(session: Session, spec: Any, field: str) -> dict[str, Any]:
    if not isinstance(spec, Mapping) or spec.get("type") not in ACTIONS:
        raise Invalid(f"{field}.type", f"one of {', '.join(ACTIONS)}")
    kind = spec["type"]
    allowed = {
        "set_attribute": {"attribute", "value"},
        "unset_attribute": {"attribute"},
        "increment_attribute": {"attribute", "by"},
        "add_to_segment": {"segment_id"},
        "remove_from_segment": {"segment_id"},
        "set_dnd": {"reason"},
        "clear_dnd": set(),
        "start_campaign": {"campaign_id"},
        "start_flow": {"flow_id"},
        "call_webhook": {"endpoint_id"},
    }[kind]
    unknown = set(spec) - allowed - {"type"}
    if unknown:
        raise Invalid(
            field,
            f"{kind} takes {', '.join(sorted(allowed)) or 'nothing else'}, not {', '.join(sorted(unknown))}",
        )
    action: dict[str, Any] = {"type": kind}
    if "attribute" in allowed:
        name = spec.get("attribute")
        types = attribute_types(session)
        if name not in types:
            raise Invalid(f"{field}.attribute", f"{name!r} is not a defined attribute (define it first)")
        action["attribute"] = name
        if kind == "set_attribute":
            value = spec.get("value")
            if value is None:
                raise Invalid(f"{field}.value", "the value to set (unset_attribute removes one)")
            named = placeholders(value) if isinstance(value, str) else []
            unknown = [p for p in named if p not in (*CONTACT_FIELDS, *EVENT_VALUES, *types)]
            if unknown:
                raise Invalid(
                    f"{field}.value",
                    f"{{{{{unknown[0]}}}}} names nothing: use a contact field, an attribute, "
                    f"{', '.join('{{' + v + '}}' for v in EVENT_VALUES)}",
                )
            if not named:  # with placeholders, the type is checked once they are filled
                prepare_attributes(session, {name: value}, types, f"{field}.value")
            action["value"] = value
        if kind == "increment_attribute":
            if types[name] != "number":
                raise Invalid(
                    f"{field}.attribute",
                    f"{name!r} is a {types[name]} attribute: only a number can be incremented",
                )
            by = spec.get("by", 1)
            if isinstance(by, bool) or not isinstance(by, int | float):
                raise Invalid(f"{field}.by", "a number")
            action["by"] = by
    if "segment_id" in allowed:
        segment = (
            session.get(Segment, spec.get("segment_id")) if isinstance(spec.get("segment_id"), int) else None
        )
        if segment is None:
            raise Invalid(f"{field}.segment_id", "the id of an existing segment")
        if segment.kind != "static":
            raise Invalid(
                f"{field}.segment_id", f"segment {segment.name!r} is dynamic: its rules decide who is in it"
            )
        action["segment_id"] = segment.id
    if kind == "start_campaign":
        campaign = session.get(Campaign, spec["campaign_id"]) if _is_id(spec.get("campaign_id")) else None
        if campaign is None or campaign.kind not in ("triggered", "drip"):
            raise Invalid(
                f"{field}.campaign_id",
                "the id of a triggered campaign (sends its message) or a drip (enrolls the contact)",
            )
        action["campaign_id"] = campaign.id
    if kind == "start_flow":
        if not _is_id(spec.get("flow_id")) or session.get(Flow, spec["flow_id"]) is None:
            raise Invalid(f"{field}.flow_id", "the id of an existing flow")
        action["flow_id"] = spec["flow_id"]
    if kind == "call_webhook":
        if not _is_id(spec.get("endpoint_id")) or session.get(WebhookEndpoint, spec["endpoint_id"]) is None:
            raise Invalid(f"{field}.endpoint_id", "the id of an existing webhook endpoint")
        action["endpoint_id"] = spec["endpoint_id"]
    if kind == "set_dnd":
        reason = spec.get("reason", "rule")
        if not isinstance(reason, str) or not 1 <= len(reason) <= 32:
            raise Invalid(f"{field}.reason", "a short reason, e.g. undeliverable")
        action["reason"] = reason
    return action


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
