"""A rule's condition and actions, as the API gives them, checked before they are kept.

Condition (on what a campaign message did; combine with all / any):
    {"status": "sent" | "delivered" | "read" | "failed", "error_codes": ["63016"]}  (reached;
        read counts as delivered, codes go with failed)
    {"replied": true}            the contact answered it
    {"tapped": "Not interested"} a button, by its payload or text
    {"all": [...]}, {"any": [...]}

Actions, run in order:
    {"type": "set_attribute", "attribute": "tier", "value": "warm"}
    {"type": "unset_attribute", "attribute": "tier"}
    {"type": "increment_attribute", "attribute": "score", "by": 1}   (a number attribute)
    {"type": "add_to_segment" | "remove_from_segment", "segment_id": 3}  (a static segment)
    {"type": "set_dnd", "reason": "undeliverable"}, {"type": "clear_dnd"}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from chatman.contacts.attributes import attribute_types, prepare_attributes
from chatman.contacts.models import Segment
from chatman.errors import Invalid

STATUSES = ("sent", "delivered", "read", "failed")
ACTIONS = (
    "set_attribute",
    "unset_attribute",
    "increment_attribute",
    "add_to_segment",
    "remove_from_segment",
    "set_dnd",
    "clear_dnd",
)
MAX_DEPTH = 4
MAX_ACTIONS = 20


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
        if spec["replied"] is not True:
            raise Invalid(f"{field}.replied", "true (a rule on not replying needs a wait, which comes later)")
        return {"replied": True}
    if set(spec) == {"tapped"}:
        if not isinstance(spec["tapped"], str) or not 1 <= len(spec["tapped"]) <= 256:
            raise Invalid(f"{field}.tapped", "the payload or text of the button")
        return {"tapped": spec["tapped"]}
    raise Invalid(field, f"unknown condition {sorted(spec)}: use status, replied, tapped, all or any")


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
            if "value" not in spec or spec["value"] is None:
                raise Invalid(f"{field}.value", "the value to set (unset_attribute removes one)")
            prepare_attributes(session, {name: spec["value"]}, types, f"{field}.value")  # its type
            action["value"] = spec["value"]
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
    if kind == "set_dnd":
        reason = spec.get("reason", "rule")
        if not isinstance(reason, str) or not 1 <= len(reason) <= 32:
            raise Invalid(f"{field}.reason", "a short reason, e.g. undeliverable")
        action["reason"] = reason
    return action
