"""Triggers (with a "test a message" box), flows, and a campaign's post-campaign rules (with a
dry run and the firings audit). The views read the form, check it with the API's own schemas,
call the domain functions and render; the domain decides what is valid."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select

from chatman.admin.blueprint import bp, form_text, load, wants_json
from chatman.api.flows import FlowSchema, FlowUpdateSchema
from chatman.api.rules import RuleSchema, RuleUpdateSchema
from chatman.api.triggers import MatchArgs, TriggerSchema, TriggerUpdateSchema
from chatman.campaigns.lifecycle import get_campaign
from chatman.campaigns.models import Campaign, CampaignStep
from chatman.contacts.attributes import attribute_types
from chatman.contacts.models import Contact
from chatman.contacts.segments import list_segments
from chatman.errors import Conflict, Invalid
from chatman.extensions import request_session, settings
from chatman.flows import crud as flows
from chatman.messaging.templates import list_templates
from chatman.outgoing.endpoints import list_endpoints
from chatman.rules import crud as rules
from chatman.rules.definition import STATUSES
from chatman.rules.engine import dry_run
from chatman.timeutils import utcnow
from chatman.triggers import crud as triggers
from chatman.triggers.inbound import inbound_policy
from chatman.triggers.intents import DEFAULT_EXAMPLE_THRESHOLD
from chatman.triggers.models import MATCH_TYPES

MATCH_LABELS = {
    "keyword": "Keyword (whole words anywhere)",
    "exact": "Exact message",
    "starts_with": "Message starts with",
    "contains": "Message contains",
    "regex": "Regular expression (RE2)",
    "fuzzy": "Fuzzy phrase (tolerates typos)",
    "button": "Button payload",
    "examples": "Example phrases only (matched by similarity)",
}
# A rule's "replied with" matches patterns: a rule has no example phrases.
RULE_MATCH_TYPES = [m for m in MATCH_TYPES if m != "examples"]
OPT_LABELS = {
    "opt_out": "Opt-out: the contact would be opted out (DND) and sent the confirmation",
    "opt_out_prompt": "Reads like an opt-out: the contact would be asked to reply STOP",
    "opt_in": "Opt-in: a contact who opted out would be subscribed again",
    "opt_in_prompt": "Reads like an opt-in: a contact who opted out would be asked to reply START",
}
ACTION_LABELS = {"reply": "Reply", "enroll": "Start a campaign", "flow": "Start a flow"}
ON_TRIGGER_LABELS = {
    "ignore": "Take it as the answer (the flow goes on)",
    "interrupt": "Interrupt the flow (the trigger runs)",
}


def _number(name: str, kind: type = int) -> Any:
    """A number field as a number; the text itself when it is not one (the schema names it)."""
    raw = form_text(name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        return raw


def _ids(records) -> list[tuple[str, str]]:
    return [(str(r.id), r.name) for r in records]


def _enrolling_campaigns(session) -> list[Campaign]:
    """Campaigns a trigger or a rule can start: triggered ones and drips."""
    query = select(Campaign).where(Campaign.kind.in_(("triggered", "drip"))).order_by(Campaign.id)
    return list(session.scalars(query.limit(500)))


# ---------------------------------------------------------------- triggers


def _trigger_form() -> dict[str, Any]:
    """Every field, so that an edit that changes the action clears what the old one used."""
    fallback = request.form.get("is_fallback") == "on"
    match_type = request.form.get("match_type") or None
    action = request.form.get("action") or None
    patterns = _lines("patterns") if match_type != "examples" else []
    examples = _lines("examples")
    if not fallback and examples and not patterns:
        match_type = "examples"  # example phrases and no patterns: nothing else it could mean
    data = {
        "name": form_text("name") or "",
        "match_type": match_type,
        "patterns": patterns,
        "examples": examples,
        "example_threshold": _number("example_threshold", float) if examples else None,
        "threshold": _number("threshold", float) if match_type == "fuzzy" and not fallback else None,
        "priority": _number("priority") or 0,
        "active_from": form_text("active_from"),
        "active_until": form_text("active_until"),
        "timezone": form_text("timezone"),
        "cooldown_s": _number("cooldown_s") or 0,
        "action": action,
        "reply_body": form_text("reply_body") if action == "reply" else None,
        "reply_template_id": _number("reply_template_id") if action == "reply" else None,
        "campaign_id": _number("campaign_id") if action == "enroll" else None,
        "flow_id": _number("flow_id") if action == "flow" else None,
        "is_fallback": fallback,
        "enabled": request.form.get("enabled") == "on",
    }
    return {k: v for k, v in data.items() if not (k == "match_type" and v is None)}


def _lines(name: str) -> list[str]:
    """A textarea's non-empty lines, stripped."""
    return [line.strip() for line in (request.form.get(name) or "").splitlines() if line.strip()]


def _line_errors(errors: dict[str, list[str]], values: dict[str, Any]) -> dict[str, list[str]]:
    """patterns[3]'s (or examples[3]'s) reasons, said with the line they are about."""
    shown: dict[str, list[str]] = {}
    for key, reasons in errors.items():
        found = re.fullmatch(r"(patterns|examples)(?:\[|\.)(\d+)\]?", key)
        lines = (values.get(found[1]) or []) if found else []
        if found and int(found[2]) < len(lines):
            i = int(found[2])
            reasons = [f"line {i + 1} ({lines[i]}): {reason}" for reason in reasons]
        shown[key] = reasons
    return shown


def _trigger_editor(trigger=None, values=None, errors=None, status=200):
    session = request_session()
    if values is None:
        values = {"match_type": "keyword", "action": "reply", "enabled": True, "priority": 0, "cooldown_s": 0}
        if trigger is not None:
            values = {field: getattr(trigger, field) for field in triggers.FIELDS}
    values = dict(values)
    values["patterns_text"] = "\n".join(values.get("patterns") or [])
    values["examples_text"] = "\n".join(values.get("examples") or [])
    return (
        render_template(
            "admin/trigger_edit.html",
            trigger=trigger,
            values=values,
            errors=_line_errors(errors or {}, values),
            default_example_threshold=f"{DEFAULT_EXAMPLE_THRESHOLD:g}",
            pattern_types=",".join(m for m in MATCH_TYPES if m != "examples"),
            match_types=[(m, MATCH_LABELS[m]) for m in MATCH_TYPES],
            actions=list(ACTION_LABELS.items()),
            templates=[("", "— none —")] + _ids(list_templates(session)),
            campaigns=[("", "— choose a triggered or drip campaign —")] + _ids(_enrolling_campaigns(session)),
            flows=[("", "— choose a flow —")] + _ids(flows.list_flows(session)),
        ),
        status,
    )


def _match(session, text: str | None, button_payload: str | None) -> dict[str, Any]:
    """Which trigger would answer a message now, as POST /api/v1/triggers/match decides it
    (the same index, candidates, active hours and fallback; cooldowns are not counted)."""
    match = triggers.match_message(session, text, button_payload, utcnow(), inbound_policy(settings()).words)
    chosen = match.trigger_id
    names = {t.id: t for t in triggers.list_triggers(session)}
    winner = next(
        (c for c in match.candidates if c.trigger.id == chosen and c.trigger.id in match.active), None
    )

    def named(trigger_id: int) -> str:
        return names[trigger_id].name if trigger_id in names else f"trigger {trigger_id}"

    opt = match.opt
    return {
        "trigger_id": chosen,
        "trigger_name": named(chosen) if chosen else None,
        "fallback": match.fallback,
        "stage": winner.how if winner else None,
        "phrase": winner.phrase if winner else None,
        "clause": winner.clause if winner else None,
        "score": round(winner.score, 1) if winner else None,
        "opt": {
            "kind": opt.kind,
            "label": OPT_LABELS.get(opt.kind if opt.by_word or opt.kind != "opt_in" else "opt_in_prompt")
            if opt.kind
            else None,
            "score": round(opt.score, 1),
            "phrase": opt.phrase,
        },
        "candidates": [
            {
                "trigger_id": c.trigger.id,
                "name": named(c.trigger.id),
                "match_type": c.trigger.match_type,
                "stage": c.how,
                "phrase": c.phrase,
                "priority": c.trigger.priority,
                "score": round(c.score, 1),
                "active": c.trigger.id in match.active,
                "chosen": c.trigger.id == chosen,
            }
            for c in match.candidates
        ],
    }


def _describe_trigger(t, names: dict[str, dict[int, str]]) -> str:
    if t.action == "reply":
        parts = []
        if t.reply_body:
            parts.append(f"replies “{t.reply_body[:80]}”")
        if t.reply_template_id:
            parts.append(f"template {names['templates'].get(t.reply_template_id, t.reply_template_id)}")
        return "; outside the window ".join(parts) or "replies"
    if t.action == "enroll":
        return f"starts campaign {names['campaigns'].get(t.campaign_id, t.campaign_id)}"
    return f"starts flow {names['flows'].get(t.flow_id, t.flow_id)}"


def _triggers_page(test=None, test_values=None, test_errors=None, status=200):
    session = request_session()
    rows = triggers.list_triggers(session)
    names = {
        "templates": {t.id: t.name for t in list_templates(session)},
        "campaigns": {c.id: c.name for c in session.scalars(select(Campaign))},
        "flows": {f.id: f.name for f in flows.list_flows(session)},
    }
    return (
        render_template(
            "admin/triggers.html",
            triggers=rows,
            answers={t.id: _describe_trigger(t, names) for t in rows},
            match_labels=MATCH_LABELS,
            test=test,
            test_values=test_values or {},
            test_errors=test_errors or {},
        ),
        status,
    )


@bp.route("/triggers", endpoint="triggers")
def triggers_list_page():
    return _triggers_page()


@bp.route("/triggers/new", methods=["GET", "POST"])
def trigger_new():
    if request.method == "GET":
        return _trigger_editor()
    session = request_session()
    data = _trigger_form()
    try:
        trigger = triggers.save_trigger(session, load(TriggerSchema(), data))
    except (Invalid, Conflict) as error:
        session.rollback()
        return _trigger_editor(values=data, errors=error.errors, status=422)
    session.commit()
    flash(f"Trigger {trigger.name} saved. Try it in the test box below.")
    return redirect(url_for("admin.triggers"))


@bp.route("/triggers/<int:trigger_id>", methods=["GET", "POST"])
def trigger_edit(trigger_id: int):
    session = request_session()
    trigger = triggers.get_trigger(session, trigger_id)
    if request.method == "GET":
        return _trigger_editor(trigger)
    data = _trigger_form()
    try:
        triggers.save_trigger(session, load(TriggerUpdateSchema(), data), trigger_id)
    except (Invalid, Conflict) as error:
        session.rollback()
        return _trigger_editor(triggers.get_trigger(session, trigger_id), data, error.errors, 422)
    session.commit()
    flash("Trigger saved.")
    return redirect(url_for("admin.triggers"))


@bp.route("/triggers/<int:trigger_id>/delete", methods=["POST"])
def trigger_delete(trigger_id: int):
    session = request_session()
    triggers.delete_trigger(session, trigger_id)
    session.commit()
    flash("Trigger deleted.")
    return redirect(url_for("admin.triggers"))


@bp.route("/triggers/test", methods=["POST"])
def trigger_test():
    """The "test a message" box: a form post renders the list with the answer; JSON answers JSON."""
    body = request.get_json(silent=True) if request.is_json else request.form
    body = body or {}
    values = {k: (body.get(k) or "").strip() for k in ("text", "button_payload")}
    try:
        args = load(MatchArgs(), {k: v for k, v in values.items() if v})
    except Invalid as error:
        if wants_json():
            return jsonify(code=422, message=error.message, errors=error.errors), 422
        return _triggers_page(test_values=values, test_errors=error.errors, status=422)
    result = _match(request_session(), args.get("text"), args.get("button_payload"))
    if wants_json():
        return jsonify(result)
    return _triggers_page(test=result, test_values=values)


# ---------------------------------------------------------------- flows

EXAMPLE_STEPS = [
    {
        "id": "city",
        "type": "ask",
        "text": "Which city are you in, {{name}}?",
        "buttons": [{"id": "pune", "title": "Pune"}, {"id": "goa", "title": "Goa"}],
        "validate": "choice",
        "save_to": "city",
        "invalid_text": "Please tap a city.",
        "next": {"goa": "beach", "*": "thanks"},
    },
    {"id": "beach", "type": "message", "text": "Goa! Our beach offers are on the way.", "next": "thanks"},
    {"id": "thanks", "type": "message", "text": "Thank you, we saved your answer."},
]


def _flow_form() -> tuple[dict[str, Any], str]:
    raw = request.form.get("steps") or ""
    data: dict[str, Any] = {
        "name": form_text("name") or "",
        "timeout_s": _number("timeout_s") if form_text("timeout_s") else 24 * 3600,
        "timeout_message": form_text("timeout_message"),
        "on_trigger": request.form.get("on_trigger") or "ignore",
    }
    try:
        data["steps"] = json.loads(raw)
    except ValueError as error:
        raise Invalid("steps", f"the definition is not valid JSON: {error}") from None
    return data, raw


def _flow_editor(flow=None, values=None, raw=None, errors=None, status=200):
    if values is None:
        values = {"timeout_s": 24 * 3600, "on_trigger": "ignore", "steps": EXAMPLE_STEPS}
        if flow is not None:
            values = {field: getattr(flow, field) for field in flows.FIELDS}
    steps = values.get("steps")
    outline = steps if isinstance(steps, list) and all(isinstance(s, dict) for s in steps) else []
    return (
        render_template(
            "admin/flow_edit.html",
            flow=flow,
            values=values,
            steps_text=raw if raw is not None else json.dumps(steps or [], indent=2, ensure_ascii=False),
            outline=outline,
            errors=errors or {},
            steps_errors={k: v for k, v in (errors or {}).items() if re.match(r"steps(\Z|\[|\.)", k)},
            on_trigger=list(ON_TRIGGER_LABELS.items()),
        ),
        status,
    )


@bp.route("/flows", endpoint="flows")
def flows_list_page():
    session = request_session()
    rows = flows.list_flows(session)
    used = {t.flow_id: t.name for t in triggers.list_triggers(session) if t.flow_id}
    return render_template("admin/flows.html", flows=rows, used=used)


@bp.route("/flows/new", methods=["GET", "POST"])
def flow_new():
    if request.method == "GET":
        return _flow_editor()
    session = request_session()
    data, raw = {"name": form_text("name")}, request.form.get("steps")
    try:
        data, raw = _flow_form()
        flow = flows.save_flow(session, load(FlowSchema(), data))
    except (Invalid, Conflict) as error:
        session.rollback()
        return _flow_editor(values={**request.form, **data}, raw=raw, errors=error.errors, status=422)
    session.commit()
    flash(f"Flow {flow.name} saved. A trigger with “Start a flow” sends contacts into it.")
    return redirect(url_for("admin.flow_edit", flow_id=flow.id))


@bp.route("/flows/<int:flow_id>", methods=["GET", "POST"])
def flow_edit(flow_id: int):
    session = request_session()
    flow = flows.get_flow(session, flow_id)
    if request.method == "GET":
        return _flow_editor(flow)
    data, raw = {"name": form_text("name")}, request.form.get("steps")
    try:
        data, raw = _flow_form()
        flows.save_flow(session, load(FlowUpdateSchema(), data), flow_id)
    except (Invalid, Conflict) as error:
        session.rollback()
        flow = flows.get_flow(session, flow_id)
        return _flow_editor(flow, values={**request.form, **data}, raw=raw, errors=error.errors, status=422)
    session.commit()
    flash("Flow saved.")
    return redirect(url_for("admin.flow_edit", flow_id=flow_id))


@bp.route("/flows/<int:flow_id>/delete", methods=["POST"])
def flow_delete(flow_id: int):
    session = request_session()
    try:
        flows.delete_flow(session, flow_id)
    except Conflict as error:
        session.rollback()
        flash(f"Not deleted: {error.message}.", "error")
        return redirect(url_for("admin.flow_edit", flow_id=flow_id))
    session.commit()
    flash("Flow deleted.")
    return redirect(url_for("admin.flows"))


# ---------------------------------------------------------------- post-campaign rules

EVENTS = [
    ("sent", "The message was sent"),
    ("delivered", "It was delivered (or read)"),
    ("read", "It was read"),
    ("failed", "It failed (optionally with these error codes)"),
    ("replied", "The contact replied"),
    ("replied_with", "The contact replied with certain words"),
    ("tapped", "The contact tapped a button"),
    ("no_reply_within", "No reply within N hours of sending"),
    ("not_read_within", "Not read within N hours of sending"),
    ("skipped", "It was not sent (skipped)"),
    ("custom", "Advanced: a condition written as JSON"),
]
RULE_ACTIONS = [
    ("", "— no action (drops this row) —"),
    ("set_attribute", "Set an attribute"),
    ("unset_attribute", "Remove an attribute"),
    ("increment_attribute", "Add to a number attribute"),
    ("add_to_segment", "Add to a static segment"),
    ("remove_from_segment", "Remove from a static segment"),
    ("set_dnd", "Set do-not-disturb"),
    ("clear_dnd", "Clear do-not-disturb"),
    ("start_campaign", "Start a campaign (triggered or drip)"),
    ("start_flow", "Start a flow"),
    ("call_webhook", "Call a webhook"),
]
ACTION_FIELDS = {  # which of a row's inputs each action reads
    "set_attribute": ("attribute", "value"),
    "unset_attribute": ("attribute",),
    "increment_attribute": ("attribute", "by"),
    "add_to_segment": ("segment_id",),
    "remove_from_segment": ("segment_id",),
    "set_dnd": ("reason",),
    "clear_dnd": (),
    "start_campaign": ("campaign_id",),
    "start_flow": ("flow_id",),
    "call_webhook": ("endpoint_id",),
}
ID_FIELDS = ("segment_id", "campaign_id", "flow_id", "endpoint_id")
ROW = re.compile(r"actions-(\d+)-type\Z")


def _condition_from_form() -> dict[str, Any]:
    event = request.form.get("event") or ""
    if event in STATUSES:
        condition: dict[str, Any] = {"status": event}
        codes = [c.strip() for c in (request.form.get("error_codes") or "").split(",") if c.strip()]
        if event == "failed" and codes:
            condition["error_codes"] = codes
        return condition
    if event == "replied":
        return {"replied": True}
    if event == "replied_with":
        patterns = [p.strip() for p in (request.form.get("reply_patterns") or "").splitlines() if p.strip()]
        return {
            "replied": {"match_type": request.form.get("reply_match_type") or "keyword", "patterns": patterns}
        }
    if event == "tapped":
        return {"tapped": form_text("tapped") or ""}
    if event in ("no_reply_within", "not_read_within"):
        return {event: _number("hours", float)}
    if event == "skipped":
        return {"skipped": form_text("skip_reason") or True}
    if event == "custom":
        try:
            condition = json.loads(request.form.get("condition_json") or "")
        except ValueError as error:
            raise Invalid("condition", f"not valid JSON: {error}") from None
        return condition
    raise Invalid("event", "choose what the message did")


def _actions_from_form() -> tuple[list[dict[str, Any]], list[int]]:
    """The action rows, in row order; empty rows are dropped. Also each action's row number."""
    rows = sorted(int(m[1]) for key in request.form if (m := ROW.match(key)))
    actions, numbers = [], []
    for n in rows:
        kind = request.form.get(f"actions-{n}-type") or ""
        if not kind:
            continue
        action: dict[str, Any] = {"type": kind}
        for field in ACTION_FIELDS.get(kind, ()):
            name = f"actions-{n}-{field}"
            if field in ID_FIELDS:
                action[field] = _number(name)
            elif field == "by":
                action[field] = _number(name, float) if form_text(name) else 1
                if isinstance(action[field], float) and action[field].is_integer():
                    action[field] = int(action[field])
            elif field == "value":
                action[field] = request.form.get(name) or None
            else:
                value = form_text(name)
                if value is not None:
                    action[field] = value
        actions.append(action)
        numbers.append(n)
    return actions, numbers


def _row_errors(errors: dict[str, list[str]], numbers: list[int]) -> dict[str, list[str]]:
    """actions[k] is the k-th action given; the editor shows it beside its row."""
    shown: dict[str, list[str]] = {}
    for key, reasons in errors.items():
        found = re.match(r"actions\[(\d+)\](.*)\Z", key)
        if found and int(found[1]) < len(numbers):
            key = f"actions[{numbers[int(found[1])]}]{found[2]}"
        shown[key] = reasons
    return shown


CONDITION_FIELDS = (  # where the editor shows a condition's errors: (key prefix, field)
    ("condition.no_reply_within", "hours"),
    ("condition.not_read_within", "hours"),
    ("condition.error_codes", "error_codes"),
    ("condition.status", "event"),
    ("condition.tapped", "tapped"),
    ("condition.skipped", "skip_reason"),
    ("condition.replied.match_type", "reply_match_type"),
    ("condition.replied", "reply_patterns"),
)


def _condition_errors(errors: dict[str, list[str]]) -> dict[str, list[str]]:
    """A condition's errors beside the field that made it (the JSON box for a custom one)."""
    custom = request.form.get("event") == "custom"
    shown: dict[str, list[str]] = {}
    for key, reasons in errors.items():
        if key == "condition" or key.startswith("condition."):
            found = next((f for prefix, f in CONDITION_FIELDS if key.startswith(prefix)), "event")
            key = "condition_json" if custom else found
        shown.setdefault(key, []).extend(reasons)
    return shown


def _rule_form() -> tuple[dict[str, Any], list[dict[str, Any]], list[int]]:
    actions, numbers = _actions_from_form()
    data: dict[str, Any] = {
        "name": form_text("name") or "",
        "step_id": _number("step_id"),
        "enabled": request.form.get("enabled") == "on",
        "actions": actions,
    }
    return data, actions, numbers


def _event_values(condition: dict[str, Any] | None) -> dict[str, Any]:
    """The editor's fields for a saved condition; one the simple fields cannot say is JSON."""
    c = condition or {}
    values: dict[str, Any] = {"condition_json": json.dumps(c, indent=2) if c else ""}
    if set(c) <= {"status", "error_codes"} and "status" in c:
        return values | {"event": c["status"], "error_codes": ", ".join(c.get("error_codes", []))}
    if c.get("replied") is True:
        return values | {"event": "replied"}
    if isinstance(c.get("replied"), dict) and set(c["replied"]) <= {"match_type", "patterns", "threshold"}:
        replied = c["replied"]
        return values | {
            "event": "replied_with",
            "reply_match_type": replied.get("match_type"),
            "reply_patterns": "\n".join(replied.get("patterns", [])),
        }
    if "tapped" in c:
        return values | {"event": "tapped", "tapped": c["tapped"]}
    for wait in ("no_reply_within", "not_read_within"):
        if wait in c:
            return values | {"event": wait, "hours": c[wait]}
    if "skipped" in c:
        return values | {"event": "skipped", "skip_reason": "" if c["skipped"] is True else c["skipped"]}
    return values | {"event": "custom" if c else "read"}


def _rule_values(rule=None) -> dict[str, Any]:
    if rule is None:
        return {"event": "read", "enabled": True, "actions": [{"type": "set_attribute"}]}
    return {
        "name": rule.name,
        "step_id": rule.step_id,
        "enabled": rule.enabled,
        "actions": list(rule.actions or []),
        **_event_values(rule.condition),
    }


def _describe_condition(c: dict[str, Any]) -> str:
    if "all" in c or "any" in c:
        word = " and " if "all" in c else " or "
        return "(" + word.join(_describe_condition(p) for p in c.get("all", c.get("any", []))) + ")"
    if "not" in c:
        return f"not {_describe_condition(c['not'])}"
    if "status" in c:
        codes = f" with code {', '.join(c['error_codes'])}" if c.get("error_codes") else ""
        return f"{c['status']}{codes}"
    if "replied" in c:
        if c["replied"] is True:
            return "replied"
        return f"replied with {c['replied'].get('match_type')}: {', '.join(c['replied'].get('patterns', []))}"
    if "tapped" in c:
        return f"tapped “{c['tapped']}”"
    if "no_reply_within" in c:
        return f"no reply within {c['no_reply_within']:g} h"
    if "not_read_within" in c:
        return f"not read within {c['not_read_within']:g} h"
    if "skipped" in c:
        return "skipped" if c["skipped"] is True else f"skipped ({c['skipped']})"
    return json.dumps(c)


def _describe_action(a: dict[str, Any], names: dict[str, dict[int, str]]) -> str:
    kind = a.get("type")
    if kind == "set_attribute":
        return f"set {a.get('attribute')} = {a.get('value')}"
    if kind == "unset_attribute":
        return f"remove {a.get('attribute')}"
    if kind == "increment_attribute":
        return f"add {a.get('by', 1)} to {a.get('attribute')}"
    if kind in ("add_to_segment", "remove_from_segment"):
        segment = names["segments"].get(a.get("segment_id"), a.get("segment_id"))
        return f"{'add to' if kind == 'add_to_segment' else 'remove from'} segment {segment}"
    if kind == "set_dnd":
        return f"set DND ({a.get('reason', 'rule')})"
    if kind == "clear_dnd":
        return "clear DND"
    if kind == "start_campaign":
        return f"start campaign {names['campaigns'].get(a.get('campaign_id'), a.get('campaign_id'))}"
    if kind == "start_flow":
        return f"start flow {names['flows'].get(a.get('flow_id'), a.get('flow_id'))}"
    if kind == "call_webhook":
        return f"call webhook {names['endpoints'].get(a.get('endpoint_id'), a.get('endpoint_id'))}"
    return str(kind)


def _names(session) -> dict[str, dict[int, str]]:
    return {
        "segments": {s.id: s.name for s in list_segments(session)},
        "campaigns": {c.id: c.name for c in session.scalars(select(Campaign))},
        "flows": {f.id: f.name for f in flows.list_flows(session)},
        "endpoints": {e.id: e.name for e in list_endpoints(session)},
    }


def _steps_of(session, campaign_id: int) -> list[tuple[str, str]]:
    steps = session.scalars(
        select(CampaignStep)
        .where(CampaignStep.campaign_id == campaign_id, CampaignStep.variant_of.is_(None))
        .order_by(CampaignStep.position)
    ).all()
    if len(steps) < 2:
        return []
    return [("", "Every step")] + [(str(s.id), f"Step {s.position + 1}") for s in steps]


def _rule_editor(campaign, rule=None, values=None, errors=None, dry=None, status=200):
    session = request_session()
    values = values if values is not None else _rule_values(rule)
    types = attribute_types(session)
    static = [s for s in list_segments(session) if s.kind == "static"]
    firings = rules.list_firings(session, rule_id=rule.id, limit=100) if rule is not None else []
    return (
        render_template(
            "admin/rule_edit.html",
            campaign=campaign,
            rule=rule,
            values=values,
            errors=errors or {},
            dry=dry,
            firings=firings,
            contacts=_contacts_of(
                [f.contact_id for f in firings] + [c for c, _ in (dry or {}).get("sample", [])]
            ),
            events=EVENTS,
            statuses=STATUSES,
            match_types=[(m, MATCH_LABELS[m]) for m in RULE_MATCH_TYPES],
            rule_actions=RULE_ACTIONS,
            steps=_steps_of(session, campaign.id),
            attributes=[("", "— choose an attribute —")]
            + [(n, f"{n} ({t})") for n, t in sorted(types.items())],
            segments=[("", "— choose a static segment —")] + _ids(static),
            campaigns=[("", "— choose a triggered or drip campaign —")] + _ids(_enrolling_campaigns(session)),
            flows=[("", "— choose a flow —")] + _ids(flows.list_flows(session)),
            endpoints=[("", "— choose an endpoint —")] + _ids(list_endpoints(session)),
            action_fields=ACTION_FIELDS,
        ),
        status,
    )


def _contacts_of(ids: list[int | None]) -> dict[int, Contact]:
    wanted = sorted({i for i in ids if i})
    if not wanted:
        return {}
    return {c.id: c for c in request_session().scalars(select(Contact).where(Contact.id.in_(wanted)))}


@bp.route("/campaigns/<int:campaign_id>/rules")
def campaign_rules(campaign_id: int):
    session = request_session()
    campaign = get_campaign(session, campaign_id)
    names = _names(session)
    rows = rules.list_rules(session, campaign_id)
    return render_template(
        "admin/rules.html",
        campaign=campaign,
        rules=rows,
        conditions={r.id: _describe_condition(r.condition) for r in rows},
        actions={r.id: [_describe_action(a, names) for a in r.actions] for r in rows},
    )


@bp.route("/campaigns/<int:campaign_id>/rules/new", methods=["GET", "POST"])
def rule_new(campaign_id: int):
    session = request_session()
    campaign = get_campaign(session, campaign_id)
    if request.method == "GET":
        return _rule_editor(campaign)
    data, actions, numbers = _rule_form()
    values = {**request.form.to_dict(), "enabled": data["enabled"], "actions": actions or [{}]}
    try:
        data["condition"] = _condition_from_form()
        rule = rules.create_rule(session, campaign_id, load(RuleSchema(), data))
    except Invalid as error:
        session.rollback()
        return _rule_editor(
            campaign,
            None,
            _form_rows(values, numbers),
            _condition_errors(_row_errors(error.errors, numbers)),
            status=422,
        )
    session.commit()
    flash(f"Rule {rule.name} saved. Run a dry run to see whom it would fire for.")
    return redirect(url_for("admin.rule_edit", rule_id=rule.id))


def _form_rows(values: dict[str, Any], numbers: list[int]) -> dict[str, Any]:
    """Re-rendered rows keep their numbers, so errors stay beside the row they are about."""
    by_number = dict(zip(numbers, values["actions"], strict=False))
    rows = [by_number.get(n, {}) for n in range(max(numbers) + 1)] if numbers else [{}]
    return {**values, "actions": rows}


@bp.route("/rules/<int:rule_id>", methods=["GET", "POST"])
def rule_edit(rule_id: int):
    session = request_session()
    rule = rules.get_rule(session, rule_id)
    campaign = get_campaign(session, rule.campaign_id)
    if request.method == "GET":
        return _rule_editor(campaign, rule)
    data, actions, numbers = _rule_form()
    values = {**request.form.to_dict(), "enabled": data["enabled"], "actions": actions or [{}]}
    try:
        data["condition"] = _condition_from_form()
        rules.update_rule(session, rule_id, load(RuleUpdateSchema(), data))
    except Invalid as error:
        session.rollback()
        rule = rules.get_rule(session, rule_id)
        return _rule_editor(
            campaign,
            rule,
            _form_rows(values, numbers),
            _condition_errors(_row_errors(error.errors, numbers)),
            status=422,
        )
    session.commit()
    flash("Rule saved.")
    return redirect(url_for("admin.rule_edit", rule_id=rule_id))


@bp.route("/rules/<int:rule_id>/delete", methods=["POST"])
def rule_delete(rule_id: int):
    session = request_session()
    campaign_id = rules.get_rule(session, rule_id).campaign_id
    rules.delete_rule(session, rule_id)
    session.commit()
    flash("Rule deleted.")
    return redirect(url_for("admin.campaign_rules", campaign_id=campaign_id))


@bp.route("/rules/<int:rule_id>/dry-run", methods=["POST"])
def rule_dry_run(rule_id: int):
    """Whom the rule would fire for if it ran now, and what it would do; changes nothing."""
    session = request_session()
    rule = rules.get_rule(session, rule_id)
    result = dry_run(session, rule)
    session.rollback()
    rule = rules.get_rule(session, rule_id)  # the dry run let go of what it read
    names = _names(session)
    dry = {
        "would_fire": result.would_fire,
        "fired_before": result.fired_before,
        "sample": result.sample,
        "actions": [_describe_action(a, names) for a in rule.actions],
        "condition": _describe_condition(rule.condition),
    }
    if wants_json():
        contacts = _contacts_of([c for c, _ in result.sample])
        return jsonify(
            {
                **dry,
                "sample": [
                    {
                        "contact_id": c,
                        "message_id": m,
                        "name": contacts[c].name if c in contacts else None,
                        "phone": contacts[c].phone if c in contacts else None,
                    }
                    for c, m in result.sample
                ],
            }
        )
    return _rule_editor(get_campaign(session, rule.campaign_id), rule, dry=dry)
