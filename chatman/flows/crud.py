"""Flows: create, change, delete, list; their steps are checked (flows.definition)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatman.contacts.attributes import define_attribute
from chatman.errors import Conflict, Invalid, NotFound
from chatman.flows.definition import check_steps
from chatman.flows.models import Flow, FlowSession

FIELDS = ("name", "steps", "timeout_s", "timeout_message", "on_trigger")


def get_flow(session: Session, flow_id: int) -> Flow:
    flow = session.get(Flow, flow_id)
    if flow is None:
        raise NotFound(f"flow {flow_id} not found")
    return flow


def list_flows(session: Session) -> list[Flow]:
    return list(session.scalars(select(Flow).order_by(Flow.id)))


def save_flow(session: Session, data: Mapping[str, Any], flow_id: int | None = None) -> Flow:
    flow = get_flow(session, flow_id) if flow_id else Flow(timeout_s=24 * 3600, on_trigger="ignore")
    with session.no_autoflush:  # the checks below query: nothing half-checked is flushed
        _apply(session, flow, data)
    session.add(flow)
    name = flow.name  # read now: a failed flush expires it
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict.taken("flow", name) from None
    for step in flow.steps:  # the attributes answers go to get their types now
        if step.get("save_to"):
            define_attribute(session, step["save_to"], step["attribute_type"])
    return flow


def _apply(session: Session, flow: Flow, data: Mapping[str, Any]) -> None:
    for key in FIELDS:
        if key in data:
            setattr(flow, key, data[key])
    if not flow.name or not flow.name.strip():
        raise Invalid("name", "a flow needs a name")
    if flow.on_trigger not in ("interrupt", "ignore"):
        raise Invalid(
            "on_trigger", "interrupt (a matching trigger ends the flow) or ignore (the flow goes on)"
        )
    if not isinstance(flow.timeout_s, int) or not 60 <= flow.timeout_s <= 30 * 86400:
        raise Invalid("timeout_s", "seconds between 60 and 30 days")
    flow.steps = check_steps(session, flow.steps)


def delete_flow(session: Session, flow_id: int) -> None:
    flow = get_flow(session, flow_id)
    busy = session.scalar(
        select(exists().where(FlowSession.flow_id == flow_id, FlowSession.status == "active"))
    )
    if busy:
        raise Conflict(f"flow {flow_id} has contacts in it; wait for them to finish or time out")
    try:
        with session.begin_nested():
            session.delete(flow)
            session.flush()
    except IntegrityError:
        raise Conflict(f"flow {flow_id} is used by a trigger") from None
