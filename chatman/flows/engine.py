"""Running a flow for one contact: send its steps, wait for answers, check and save them, branch,
and end it (completed, timed out, interrupted, stopped). State lives in `flow_sessions`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import exists, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatman.contacts.models import Contact
from chatman.dialects import json_merge
from chatman.errors import NotFound
from chatman.flows.models import Flow, FlowSession
from chatman.messaging.normalise import normalise
from chatman.messaging.outbox import queue_message
from chatman.messaging.rendering import contact_values, render
from chatman.timeutils import utcnow

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}\Z")
DATE_FORMATS = (
    "%Y-%m-%d",
    "%d/%m/%Y",
    "%d-%m-%Y",
    "%d.%m.%Y",
    "%d %b %Y",
    "%d %B %Y",
    "%b %d %Y",
    "%B %d %Y",
)
INVALID = {
    "text": "Please answer with a few words.",
    "number": "Please answer with a number.",
    "date": "Please answer with a date, like 25/12/2026.",
    "email": "Please answer with an e-mail address.",
    "choice": "Please pick one of the options.",
}


def active_session(session: Session, contact_id: int) -> FlowSession | None:
    """The contact's active session, locked until commit (two answers at once queue up)."""
    return session.scalar(
        select(FlowSession)
        .where(FlowSession.contact_id == contact_id, FlowSession.status == "active")
        .with_for_update()
    )


def start(session: Session, flow_id: int, contact_id: int, now: datetime | None = None) -> list[int]:
    """Start `flow_id` for the contact (ending a flow it was in); returns messages queued."""
    now = now or utcnow()
    flow = session.get(Flow, flow_id)
    if flow is None:
        raise NotFound(f"flow {flow_id} not found")
    current = active_session(session, contact_id)
    if current is not None:
        end(session, current, "interrupted", now)
        session.flush()
    run = FlowSession(
        flow_id=flow.id,
        contact_id=contact_id,
        step=flow.steps[0]["id"],
        status="active",
        answers={},
        reprompts=0,
        started_at=now,
        updated_at=now,
        deadline_at=now + timedelta(seconds=flow.timeout_s),
    )
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError:  # another message of this contact started a flow at the same moment
        return []
    return _walk(session, flow, run, flow.steps[0]["id"], now)


def answer(
    session: Session,
    run: FlowSession,
    text: str | None,
    button_payload: str | None,
    now: datetime | None = None,
) -> list[int]:
    """Take the contact's answer to the question the flow waits on; re-ask when it does not
    fit. Returns messages queued."""
    now = now or utcnow()
    flow = session.get(Flow, run.flow_id)
    step = _step(flow, run.step)
    value, key = _parse(step, text, button_payload)
    if value is None:
        run.reprompts += 1
        run.updated_at, run.deadline_at = now, now + timedelta(seconds=flow.timeout_s)
        hint = step.get("invalid_text") or INVALID[step["validate"]]
        return [_say(session, run, f"{hint}\n{_text(session, run, step)}", step, now)]
    if step.get("save_to"):
        session.execute(
            update(Contact)
            .where(Contact.id == run.contact_id)
            .values(
                attributes=json_merge(
                    session.get_bind().dialect.name,
                    Contact.attributes,
                    literal({step["save_to"]: value}, Contact.attributes.type),
                ),
                updated_at=now,
            )
        )
    run.answers = {**run.answers, step["id"]: value}
    return _walk(session, flow, run, _next(step, key, value), now)


def end(session: Session, run: FlowSession, status: str, now: datetime | None = None) -> None:
    run.status, run.ended_at = status, now or utcnow()
    run.updated_at = run.ended_at


def any_overdue(session: Session, now: datetime) -> bool:
    return bool(
        session.scalar(select(exists().where(FlowSession.status == "active", FlowSession.deadline_at < now)))
    )


def expire(session: Session, now: datetime | None = None, limit: int = 500) -> list[int]:
    """End sessions whose contact stopped answering, sending the flow's timeout message (the
    send policy skips it, with its reason, once the contact's window has closed or they are
    DND). Returns messages queued."""
    now = now or utcnow()
    queued = []
    overdue = session.scalars(
        select(FlowSession)
        .where(FlowSession.status == "active", FlowSession.deadline_at < now)
        .order_by(FlowSession.deadline_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for run in overdue:
        end(session, run, "timed_out", now)
        flow = session.get(Flow, run.flow_id)
        if flow.timeout_message:
            queued.append(queue_message(session, run.contact_id, "flow", body=flow.timeout_message, now=now))
    return queued


def _walk(session: Session, flow: Flow, run: FlowSession, step_id: str | None, now: datetime) -> list[int]:
    """Send steps from `step_id` until one asks (the flow waits there) or the flow ends."""
    queued = []
    while step_id is not None:
        step = _step(flow, step_id)
        queued.append(_say(session, run, _text(session, run, step), step, now))
        if step["type"] == "ask":
            run.step = step_id
            run.updated_at, run.deadline_at = now, now + timedelta(seconds=flow.timeout_s)
            return queued
        step_id = step.get("next") if isinstance(step.get("next"), str) else None
    end(session, run, "completed", now)
    return queued


def _say(session: Session, run: FlowSession, text: str, step: Mapping[str, Any], now: datetime) -> int:
    if step.get("content_sid"):  # a quick-reply content the provider renders with buttons
        return queue_message(
            session, run.contact_id, "flow", body=text, content_sid=step["content_sid"], now=now
        )
    buttons = step.get("buttons") or []
    if buttons:  # plain text: the options are listed, answerable by number or name
        text += "\n" + "\n".join(f"{i}. {b['title']}" for i, b in enumerate(buttons, 1))
    return queue_message(session, run.contact_id, "flow", body=text, now=now)


def _text(session: Session, run: FlowSession, step: Mapping[str, Any]) -> str:
    contact = session.get(Contact, run.contact_id, populate_existing=True)  # answers saved just now
    return render(step["text"], {**contact_values(contact), **run.answers}, missing="")


def _step(flow: Flow, step_id: str) -> dict[str, Any]:
    return next(s for s in flow.steps if s["id"] == step_id)


def _next(step: Mapping[str, Any], key: str | None, value: Any) -> str | None:
    nxt = step.get("next")
    if not isinstance(nxt, dict):
        return nxt
    for candidate in (key, str(value)):
        if candidate is not None and candidate in nxt:
            return nxt[candidate]
    return nxt.get("*")


def _parse(step: Mapping[str, Any], text: str | None, payload: str | None) -> tuple[Any, str | None]:
    """(the answer as saved, the button id it chose) or (None, None) when it does not fit."""
    raw = (text or "").strip()
    kind = step["validate"]
    if kind == "choice":
        buttons = step.get("buttons") or []
        wanted = normalise(payload or raw)
        for i, button in enumerate(buttons, 1):
            if wanted in (normalise(button["id"]), normalise(button["title"]), str(i)):
                return button["title"], button["id"]
        return None, None
    if not raw:
        return None, None
    if kind == "text":
        return raw[:500], None
    if kind == "email":
        return (raw.lower(), None) if EMAIL.match(raw) else (None, None)
    if kind == "number":
        try:
            number = float(raw.replace(",", ""))
        except ValueError:
            return None, None
        return (int(number) if number.is_integer() else number), None
    for fmt in DATE_FORMATS:
        try:
            return date.fromisoformat(datetime.strptime(raw, fmt).date().isoformat()).isoformat(), None
        except ValueError:
            continue
    return None, None
