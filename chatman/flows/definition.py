"""A flow's steps: their shape, checked when a flow is saved, so a running flow never meets a
step it cannot take.

    {"id": "city", "type": "ask", "text": "Which city?",
     "buttons": [{"id": "pune", "title": "Pune"}, {"id": "goa", "title": "Goa"}],
     "validate": "choice", "save_to": "city", "invalid_text": "Please tap a city.",
     "next": {"goa": "beach", "*": "confirm"}}

type: "message" (sent, then the flow goes on) or "ask" (sent, then it waits for the answer).
validate (ask): text, number, date (YYYY-MM-DD, DD/MM/YYYY, ...), email, choice (one of the
buttons, by id, title or number). save_to: a contact attribute, typed after the answer
(text, email, choice: string; number: number; date: date), or `attribute_type` to say so.
next: a step id, or per answer ({choice id or value: step id, "*": otherwise}); no next
ends the flow. Text may use {{name}}, {{phone}}, {{any_attribute}}.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.orm import Session

from chatman.contacts.attributes import attribute_types
from chatman.contacts.fields import validate_attribute_name
from chatman.contacts.models import ATTRIBUTE_TYPES
from chatman.errors import Invalid

STEP_TYPES = ("message", "ask")
VALIDATIONS = ("text", "number", "date", "email", "choice")
NATURAL_TYPE = {"text": "string", "number": "number", "date": "date", "email": "string", "choice": "string"}
STEP_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
MAX_STEPS = 100
MAX_BUTTONS = 10


def check_steps(session: Session, steps: Any, field: str = "steps") -> list[dict[str, Any]]:
    """The steps, checked; Invalid names every mistake by its JSON path."""
    errors: dict[str, list[str]] = {}

    def fail(path: str, reason: str) -> None:
        errors.setdefault(path, []).append(reason)

    if not isinstance(steps, list) or not steps:
        raise Invalid(field, "a flow needs a list of at least one step")
    if len(steps) > MAX_STEPS:
        raise Invalid(field, f"at most {MAX_STEPS} steps")
    ids = [s.get("id") if isinstance(s, dict) else None for s in steps]
    known_types = attribute_types(session)
    for i, step in enumerate(steps):
        path = f"{field}[{i}]"
        if not isinstance(step, dict):
            fail(path, "a step is an object")
            continue
        if not isinstance(step.get("id"), str) or not STEP_ID.match(step["id"]):
            fail(f"{path}.id", "letters, digits, _ or -, at most 64")
        elif ids.count(step["id"]) > 1:
            fail(f"{path}.id", f"{step['id']!r} is used by more than one step")
        if step.get("type") not in STEP_TYPES:
            fail(f"{path}.type", f"one of {', '.join(STEP_TYPES)}")
        if not isinstance(step.get("text"), str) or not step["text"].strip():
            fail(f"{path}.text", "what the step says")
        if step.get("type") == "ask":
            _check_ask(step, path, known_types, fail)
        _check_next(step, ids, path, fail)
    if not errors:
        _check_message_loops(steps, fail, field)
    if errors:
        raise Invalid.many(errors)
    return steps


def _check_ask(step: dict, path: str, known_types: dict[str, str], fail) -> None:
    validate = step.setdefault("validate", "choice" if step.get("buttons") else "text")
    if validate not in VALIDATIONS:
        fail(f"{path}.validate", f"one of {', '.join(VALIDATIONS)}")
        return
    buttons = step.get("buttons") or []
    if not isinstance(buttons, list) or len(buttons) > MAX_BUTTONS:
        fail(f"{path}.buttons", f"a list of at most {MAX_BUTTONS} buttons")
        buttons = []
    for j, button in enumerate(buttons):
        if not (isinstance(button, dict) and isinstance(button.get("id"), str) and button.get("title")):
            fail(f"{path}.buttons[{j}]", 'each button is {"id": "...", "title": "..."}')
    if validate == "choice" and not buttons:
        fail(f"{path}.buttons", "a choice needs buttons to choose from")
    save_to = step.get("save_to")
    if save_to is None:
        return
    try:
        validate_attribute_name(save_to, f"{path}.save_to")
    except Invalid as error:
        fail(f"{path}.save_to", error.reason)
        return
    wanted = step.get("attribute_type", NATURAL_TYPE[validate])
    if wanted not in ATTRIBUTE_TYPES:
        fail(
            f"{path}.attribute_type",
            f"unknown attribute type {wanted!r}; one of {', '.join(ATTRIBUTE_TYPES)}",
        )
    elif NATURAL_TYPE[validate] != wanted:
        fail(
            f"{path}.attribute_type",
            f"a {validate} answer is saved as {NATURAL_TYPE[validate]}, not {wanted}",
        )
    elif known_types.get(save_to, wanted) != wanted:
        fail(
            f"{path}.save_to", f"attribute {save_to!r} holds {known_types[save_to]}; this step saves {wanted}"
        )
    else:
        step["attribute_type"] = wanted


def _check_next(step: dict, ids: list, path: str, fail) -> None:
    nxt = step.get("next")
    if nxt is None:
        return
    targets = nxt.values() if isinstance(nxt, dict) else [nxt]
    if isinstance(nxt, dict) and step.get("type") != "ask":
        fail(f"{path}.next", "only an ask step branches on the answer")
    for target in targets:
        if target not in ids:
            fail(f"{path}.next", f"refers to step {target!r}, which the flow does not have")


def _check_message_loops(steps: list[dict], fail, field: str) -> None:
    """Message steps that lead back to themselves would send forever without waiting."""
    by_id = {s["id"]: s for s in steps}
    for start in steps:
        seen, step = set(), start
        while step is not None and step["type"] == "message":
            if step["id"] in seen:
                fail(field, f"steps from {start['id']!r} send messages in a loop without asking anything")
                return
            seen.add(step["id"])
            nxt = step.get("next")
            step = by_id.get(nxt) if isinstance(nxt, str) else None
