"""A campaign's report: headline figures and rates, a funnel chart and a time series chart (in
the marketer's zone), failures by code, skipped by reason, runs, steps, A/B variants; the
recipients behind an outcome, a CSV export, and a segment made from an outcome.

Every figure comes from the domain report functions, called as the API calls them (the API's
schemas check the arguments), so the admin and the API never disagree."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import flash, jsonify, redirect, render_template, request, url_for

from chatman.admin.blueprint import bp, form_text, load, viewer_zone
from chatman.api.reports import (
    RecipientArgs,
    RetargetSchema,
    ScopeArgs,
    SeriesArgs,
    csv_download,
    full_report,
)
from chatman.campaigns import lifecycle
from chatman.errors import Invalid
from chatman.extensions import request_session
from chatman.reports import errors, funnel, recipients, timeseries

# The bars of the funnel chart, top to bottom.
FUNNEL = ("targeted", "sent", "delivered", "read", "replied", "clicked")
# Outcomes a marketer acts on: (label, outcomes they have, outcomes they do not have).
HIGHLIGHTS = (
    ("Read but not replied", ("read",), ("replied",)),
    ("Delivered but not read", ("delivered",), ("read",)),
    ("Sent but not delivered", ("sent",), ("delivered",)),
    ("Replied", ("replied",), ()),
    ("Clicked a link", ("clicked",), ()),
    ("Failed", ("failed",), ()),
    ("Skipped", ("skipped",), ()),
)
PRESET_LABELS = {
    "today": "Today",
    "yesterday": "Yesterday",
    "last_7_days": "Last 7 days",
    "last_30_days": "Last 30 days",
    "this_month": "This month",
    "last_month": "Last month",
    "custom": "Custom range",
}
GRANULARITY_LABELS = {
    "": "Automatic",
    "half_hour": "Half-hours",
    "hour": "Hours",
    "day": "Days",
    "month": "Months",
}
PAGE_SIZE = 50


def _args(names: tuple[str, ...], lists: tuple[str, ...] = ()) -> dict[str, Any]:
    """The query string's values for a schema: lists as lists, empty values left out."""
    data: dict[str, Any] = {}
    for name in lists:
        values = [v.strip() for v in request.args.getlist(name) if v.strip()]
        if values:
            data[name] = values
    for name in names:
        value = (request.args.get(name) or "").strip()
        if value:
            data[name] = value
    return data


def _scope(campaign_id: int, args: Mapping[str, Any]) -> recipients.Scope:
    return recipients.Scope(campaign_id, args.get("run_id"), args.get("step_id"))


def describe(include: list[str] | tuple[str, ...], exclude: list[str] | tuple[str, ...] = ()) -> str:
    """An outcome in words: "read, not replied"."""
    words = [name.replace("_", " ") for name in include]
    words += [f"not {name.replace('_', ' ')}" for name in exclude]
    return ", ".join(words)


def outcome_args(include, exclude=(), **scope) -> dict[str, Any]:
    """url_for arguments of an outcome (repeated `outcome` and `not`)."""
    return {"outcome": list(include), "not": list(exclude), **{k: v for k, v in scope.items() if v}}


def _local(zone: ZoneInfo):
    def show(value: datetime | str | None) -> str:
        if value is None:
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.astimezone(zone).strftime("%Y-%m-%d %H:%M")

    return show


def _step_names(report: Mapping[str, Any]) -> dict[int, str]:
    names = {s["step_id"]: f"step {s['position']}" for s in report["steps"] if s["position"]}
    return names | {v["step_id"]: f"variant {v['label']}" for v in report["variants"]}


def _series_args() -> dict[str, Any]:
    data = _args(("preset", "granularity", "start", "end"))
    return load(SeriesArgs(), {**data, "timezone": viewer_zone()})


@bp.route("/campaigns/<int:campaign_id>/report")
def campaign_report(campaign_id: int):
    session = request_session()
    campaign = lifecycle.get_campaign(session, campaign_id)
    report = full_report(session, campaign_id)
    chosen = _args(("preset", "granularity", "start", "end"))
    return render_template(
        "admin/report.html",
        campaign=campaign,
        report=report,
        counts=report["counts"],
        funnel_steps=FUNNEL,
        highlights=HIGHLIGHTS,
        groups=sorted(errors.GROUPS),
        presets=[(p, PRESET_LABELS.get(p, p)) for p in timeseries.PRESETS],
        granularities=[(g, GRANULARITY_LABELS.get(g, g)) for g in ("", *timeseries.GRANULARITIES)],
        chosen={"preset": "last_7_days", "granularity": "", **chosen},
        zone=viewer_zone(),
        local=_local(ZoneInfo(viewer_zone())),
        describe=describe,
        outcome_args=outcome_args,
        step_names=_step_names(report),
        data_url=url_for("admin.campaign_report_data", campaign_id=campaign_id, **chosen),
    )


@bp.route("/campaigns/<int:campaign_id>/report.json")
def campaign_report_data(campaign_id: int):
    """What the charts draw: the funnel's bars and the time series in the viewer's zone."""
    session = request_session()
    lifecycle.get_campaign(session, campaign_id)
    try:  # a chart's question, answered in JSON whatever the client accepts
        args = _series_args()
        series = timeseries.timeseries(
            session,
            [campaign_id],
            args["timezone"],
            args["preset"],
            args.get("granularity"),
            args.get("start"),
            args.get("end"),
        )
    except Invalid as error:
        return jsonify(code=422, message=error.message, errors=error.errors), 422
    counts = funnel.campaign_report(session, campaign_id)["counts"]
    return jsonify(
        campaign_id=campaign_id,
        funnel={"labels": list(FUNNEL), "values": [counts[name] for name in FUNNEL]},
        timeseries=series,
    )


@bp.route("/campaigns/<int:campaign_id>/recipients")
def campaign_recipients(campaign_id: int):
    """The recipients behind an outcome (`?outcome=read&not=replied`), a page at a time."""
    session = request_session()
    campaign = lifecycle.get_campaign(session, campaign_id)
    args = load(RecipientArgs(), _args(("run_id", "step_id", "after", "limit"), ("outcome", "not")))
    items, next_after = recipients.drill_down(
        session, _scope(campaign_id, args), args["outcome"], args["not_"], args["after"], args["limit"]
    )
    scope = {"run_id": args.get("run_id"), "step_id": args.get("step_id")}
    here = outcome_args(args["outcome"], args["not_"], **scope)
    return render_template(
        "admin/report_recipients.html",
        campaign=campaign,
        items=items,
        outcome=args["outcome"],
        exclude=args["not_"],
        scope=scope,
        title=describe(args["outcome"], args["not_"]),
        outcome_query=here,
        first_page=args["after"] == 0,
        next_url=url_for(
            "admin.campaign_recipients",
            campaign_id=campaign_id,
            after=next_after,
            limit=args["limit"],
            **here,
        )
        if next_after is not None
        else None,
        local=_local(ZoneInfo(viewer_zone())),
    )


@bp.route("/campaigns/<int:campaign_id>/export.csv")
def campaign_export(campaign_id: int):
    """The per-recipient ledger as CSV, streamed (the API's export, behind the admin's login)."""
    session = request_session()
    lifecycle.get_campaign(session, campaign_id)
    args = load(ScopeArgs(), _args(("run_id", "step_id"), ("outcome", "not")))
    return csv_download(session, campaign_id, _scope(campaign_id, args), args)


@bp.route("/campaigns/<int:campaign_id>/retarget", methods=["POST"])
def campaign_retarget(campaign_id: int):
    """A new static segment of the contacts with an outcome; then the segment's page."""
    session = request_session()
    campaign = lifecycle.get_campaign(session, campaign_id)
    include = [v for v in request.form.getlist("outcome") if v.strip()]
    exclude = [v for v in request.form.getlist("not") if v.strip()]
    data: dict[str, Any] = {
        "name": form_text("name") or f"{campaign.name}: {describe(include, exclude)}"[:200],
        "description": f"Made from the report of campaign {campaign.name!r} (#{campaign_id}): "
        f"{describe(include, exclude)}.",
        "outcome": include,
        "not": exclude,
    }
    for name in ("run_id", "step_id"):
        if form_text(name):
            data[name] = form_text(name)
    args = load(RetargetSchema(), data)
    segment_id, members = recipients.retarget(
        session, _scope(campaign_id, args), args["name"], args["outcome"], args["not_"], args["description"]
    )
    session.commit()
    flash(f"Segment {args['name']} made with {members} contact{'' if members == 1 else 's'}.")
    return redirect(url_for("admin.segment", segment_id=segment_id))
