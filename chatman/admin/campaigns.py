"""Campaigns: the list with progress, one editor for every kind, a campaign's page with its
pre-flight, schedule, next occurrences and steps, and launch / schedule / pause / resume /
cancel."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import flash, jsonify, redirect, render_template, request, url_for

from chatman.admin.blueprint import bp, form_ints, form_text, load, viewer_zone
from chatman.api.campaigns import CampaignSchema, CampaignUpdateSchema
from chatman.campaigns import drips, lifecycle, recurrence, variants
from chatman.campaigns.models import CAMPAIGN_KINDS, ENROLLING_KINDS
from chatman.contacts.segments import list_segments
from chatman.errors import Conflict, DomainError, Invalid
from chatman.extensions import redis_client, request_session, settings
from chatman.jobs import campaign_preflight, change_campaign, launch_campaign
from chatman.messaging.templates import list_templates
from chatman.reports import funnel

KIND_LABELS = {
    "one_time": "One-time broadcast",
    "recurring": "Recurring",
    "drip": "Drip (steps over time)",
    "triggered": "Triggered (by an event or a trigger)",
    "date": "On a date (birthday, renewal)",
}
FINISHED = ("completed", "cancelled")


def _int(name: str) -> int | str | None:
    """A whole number field; the text itself when it is not one (the schema then names it)."""
    raw = form_text(name)
    if raw is None:
        return None
    return int(raw) if raw.lstrip("-").isdigit() else raw


def _content(prefix: str) -> dict:
    """A message: a template, or free text (which only reaches contacts inside the window)."""
    if request.form.get(f"{prefix}content") == "text":
        return {"body": request.form.get(f"{prefix}body") or ""}
    return {"template_id": _int(f"{prefix}template_id")}


def _rows(prefix: str) -> list[int]:
    numbers = {
        int(key[len(prefix) :].split("-", 1)[0])
        for key in request.form
        if key.startswith(prefix) and key[len(prefix) :].split("-", 1)[0].isdigit()
    }
    return sorted(numbers)


def _steps() -> list[dict]:
    steps = []
    for n in _rows("step-"):
        p = f"step-{n}-"
        if request.form.get(f"{p}content") == "text" and not (request.form.get(f"{p}body") or "").strip():
            continue  # an empty row left at the end of the form
        if request.form.get(f"{p}content") != "text" and not form_text(f"{p}template_id"):
            continue
        step: dict = {**_content(p)}
        if form_text(f"{p}id"):
            step["id"] = _int(f"{p}id")
        amount, unit = _int(f"{p}wait_amount"), request.form.get(f"{p}wait_unit") or "days"
        if amount not in (None, 0):
            step["wait"] = {unit: amount}
            if form_text(f"{p}at") and unit in ("days", "weeks"):
                step["wait"]["at"] = form_text(f"{p}at")
        if form_text(f"{p}condition"):
            step["condition"] = {"if": form_text(f"{p}condition")}
            if step["condition"]["if"] == "tapped":
                step["condition"]["button"] = form_text(f"{p}button")
        steps.append(step)
    return steps


def _variants() -> list[dict] | None:
    rows = [
        {**_content(f"variant-{n}-"), "percent": _int(f"variant-{n}-percent")}
        for n in _rows("variant-")
        if form_text(f"variant-{n}-percent")
    ]
    return rows or None


def _form_data(kind: str) -> dict:
    data: dict = {
        "name": form_text("name"),
        "include_segments": form_ints("include_segments"),
        "exclude_segments": form_ints("exclude_segments"),
        # A one-time campaign's zone is its schedule's, given when it is scheduled.
        # (and a recurring one's is its recurrence's)
        "timezone": form_text("timezone") if kind not in ("one_time", "recurring") else None,
        "utm_campaign": form_text("utm_campaign"),
    }
    if form_text("window_from") or form_text("window_to"):
        data["send_window"] = {
            "from": form_text("window_from"),
            "to": form_text("window_to"),
            **(
                {"weekdays": request.form.getlist("window_weekdays")}
                if request.form.getlist("window_weekdays")
                else {}
            ),
        }
    if kind in ("one_time", "recurring", "triggered"):
        found = _variants() if kind != "triggered" and request.form.get("ab") == "on" else None
        if found:
            data["variants"] = found
            if kind == "one_time" and request.form.get("ab_test") == "on":
                data["ab_test"] = {
                    "test_percent": _int("ab_test_percent"),
                    "judge_by": request.form.get("ab_judge_by") or "read",
                    "after_hours": _int("ab_after_hours"),
                }
        else:
            data |= _content("")
    if kind == "triggered":
        data["trigger_event"] = form_text("trigger_event")
    if kind == "recurring":
        rule: dict = {"timezone": form_text("timezone") or "UTC", "start": form_text("rec_start")}
        if request.form.get("rec_mode") == "cron":
            rule["cron"] = form_text("rec_cron")
        else:
            rule |= {"every": request.form.get("rec_every") or "day", "interval": _int("rec_interval") or 1}
            rule["at"] = form_text("rec_at") or "09:00"
            if rule["every"] == "week" and request.form.getlist("rec_weekdays"):
                rule["weekdays"] = request.form.getlist("rec_weekdays")
        for key in ("until",):
            if form_text(f"rec_{key}"):
                rule[key] = form_text(f"rec_{key}")
        if form_text("rec_count"):
            rule["count"] = _int("rec_count")
        data["recurrence"] = rule
    if kind == "drip":
        data["steps"] = _steps()
        data["drip"] = {"exit_on": request.form.getlist("exit_on")}
    if kind == "date":
        data["steps"] = [_content("")]
        data.pop("template_id", None)
        data["date_field"] = {
            "attribute": form_text("date_attribute"),
            "offset_days": _int("date_offset_days") or 0,
            "at": form_text("date_at") or "10:00",
            "repeat": request.form.get("date_repeat") or "yearly",
        }
    if kind == "triggered":  # it goes to whoever triggers it
        del data["include_segments"], data["exclude_segments"]
    return {k: v for k, v in data.items() if v is not None}


def _editor(kind: str, campaign=None, values=None, errors=None, status=200):
    session = request_session()
    if values is None:
        values = _values_of(campaign) if campaign else {"kind": kind, "timezone": viewer_zone()}
        if campaign is None and request.args.get("segment", type=int):
            values["include_segments"] = [request.args.get("segment", type=int)]
    return (
        render_template(
            "admin/campaign_edit.html",
            campaign=campaign,
            kind=kind,
            kinds=[(k, KIND_LABELS[k]) for k in CAMPAIGN_KINDS],
            values=values,
            errors=errors or {},
            segments=[(s.id, s.name) for s in list_segments(session)],
            templates=[(t.id, f"{t.name} ({t.language}, {t.status})") for t in list_templates(session)],
            units=drips.WAIT_UNITS,
            conditions=drips.CONDITIONS,
            exits=drips.EXITS,
            weekdays=recurrence.WEEKDAYS,
            judges=variants.JUDGES,
        ),
        status,
    )


def _values_of(campaign) -> dict:
    session = request_session()
    step = lifecycle.campaign_step(session, campaign.id)
    values = {
        "kind": campaign.kind,
        "name": campaign.name,
        "template_id": step.template_id,
        "body": step.body,
        "content": "text" if step.body is not None else "template",
        "timezone": campaign.timezone,
        "trigger_event": campaign.trigger_event,
        "utm_campaign": campaign.utm_campaign,
        "recurrence": campaign.recurrence or {},
        "send_window": campaign.send_window or {},
        "steps": drips.step_dicts(session, campaign.id) if campaign.kind in ENROLLING_KINDS else [],
        "drip": campaign.drip or {},
        "variants": variants.as_dicts(variants.steps(session, step)),
        "ab_test": campaign.ab_test,
        **lifecycle.campaign_segments(session, campaign.id),
    }
    values["include_segments"] = values.pop("include")
    values["exclude_segments"] = values.pop("exclude")
    return values


@bp.route("/campaigns")
def campaigns():
    session = request_session()
    status = request.args.get("status") or None
    after = request.args.get("after", type=int)
    rows = lifecycle.list_campaigns(session, status, after, 50)
    summaries = funnel.summaries(session, [c.id for c in rows])
    return render_template(
        "admin/campaigns.html",
        campaigns=rows,
        summaries=summaries,
        progress={c.id: _progress_of(c, summaries[c.id]) for c in rows},
        labels=KIND_LABELS,
        status=status,
        next_after=rows[-1].id if len(rows) == 50 else None,
    )


@bp.route("/campaigns/new", methods=["GET", "POST"])
def campaign_new():
    kind = request.values.get("kind", "one_time")
    if kind not in CAMPAIGN_KINDS:
        kind = "one_time"
    if request.method == "GET":
        return _editor(kind)
    session = request_session()
    data = _form_data(kind)
    try:
        campaign = lifecycle.create_campaign(session, load(CampaignSchema(), {**data, "kind": kind}))
    except (Invalid, Conflict) as error:
        session.rollback()
        return _editor(
            kind, values={**request.form.to_dict(), **data, "kind": kind}, errors=error.errors, status=422
        )
    session.commit()
    flash(f"Campaign {campaign.name} saved as a draft. Check the pre-flight, then launch it.")
    return redirect(url_for("admin.campaign", campaign_id=campaign.id))


@bp.route("/campaigns/<int:campaign_id>/edit", methods=["GET", "POST"])
def campaign_edit(campaign_id: int):
    session = request_session()
    campaign = lifecycle.get_campaign(session, campaign_id)
    if request.method == "GET":
        return _editor(campaign.kind, campaign)
    data = _form_data(campaign.kind)
    try:
        lifecycle.update_campaign(session, campaign_id, load(CampaignUpdateSchema(partial=True), data))
    except (Invalid, Conflict) as error:
        session.rollback()
        campaign = lifecycle.get_campaign(session, campaign_id)
        values = {**request.form.to_dict(), **data, "kind": campaign.kind}
        return _editor(campaign.kind, campaign, values=values, errors=error.errors, status=422)
    session.commit()
    flash("Campaign saved.")
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))


def _occurrences(campaign) -> tuple[str, list[str]]:
    if campaign.kind != "recurring" or campaign.status in FINISHED:
        return "", []
    zone, times = lifecycle.upcoming(request_session(), campaign.id, 5)
    return zone, [t.astimezone(ZoneInfo(zone)).strftime("%a %d %b %Y, %H:%M") for t in times]


@bp.route("/campaigns/<int:campaign_id>")
def campaign(campaign_id: int):
    session = request_session()
    record = lifecycle.get_campaign(session, campaign_id)
    summary = funnel.summaries(session, [campaign_id])[campaign_id]
    zone, occurrences = _occurrences(record)
    step = lifecycle.campaign_step(session, campaign_id)
    return render_template(
        "admin/campaign.html",
        campaign=record,
        label=KIND_LABELS[record.kind],
        summary=summary,
        progress=_progress_of(record, summary),
        preflight=campaign_preflight(session, campaign_id, settings())
        if record.status in ("draft", "scheduled")
        else None,
        zone=zone,
        occurrences=occurrences,
        steps=drips.step_dicts(session, campaign_id) if record.kind in ENROLLING_KINDS else [],
        variants=variants.as_dicts(variants.steps(session, step)),
        step=step,
        runs=lifecycle.campaign_runs(session, campaign_id),
        templates={t.id: t.name for t in list_templates(session)},
        viewer_zone=viewer_zone(),
    )


def _progress_of(campaign, summary: dict) -> dict:
    counts = summary["counters"]
    finished = campaign.status in FINISHED
    return {
        "progress": funnel.progress(counts, finished),
        "status": campaign.status,
        "done": campaign.status in FINISHED,
        **{
            name: counts.get(name, 0)
            for name in ("targeted", "submitted", "sent", "delivered", "read", "failed", "skipped")
        },
    }


@bp.route("/campaigns/<int:campaign_id>/progress.json")
def campaign_progress(campaign_id: int):
    session = request_session()
    record = lifecycle.get_campaign(session, campaign_id)
    return jsonify(_progress_of(record, funnel.summaries(session, [campaign_id])[campaign_id]))


@bp.route("/campaigns/<int:campaign_id>/launch", methods=["POST"])
def campaign_launch(campaign_id: int):
    session = request_session()
    try:
        report = launch_campaign(session, redis_client(), campaign_id, settings())
    except DomainError as error:
        for reasons in error.errors.values() or [[error.message]]:
            for reason in reasons:
                flash(reason, "error")
        return redirect(url_for("admin.campaign", campaign_id=campaign_id))
    flash(f"Launched: {report.eligible} contacts will get it.")
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))


@bp.route("/campaigns/<int:campaign_id>/schedule", methods=["POST"])
def campaign_schedule(campaign_id: int):
    session = request_session()
    raw, zone = form_text("send_at"), form_text("timezone") or viewer_zone()
    try:
        send_at = datetime.fromisoformat(raw) if raw else None
    except ValueError:
        send_at = None
    if send_at is None or send_at.tzinfo is not None:
        flash("Pick the date and time to send at.", "error")
        return redirect(url_for("admin.campaign", campaign_id=campaign_id))
    try:
        lifecycle.schedule(session, campaign_id, send_at, zone)
    except DomainError as error:
        flash(error.message, "error")
        return redirect(url_for("admin.campaign", campaign_id=campaign_id))
    session.commit()
    flash(f"Scheduled for {send_at:%d %b %Y, %H:%M} ({zone}).")
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))


@bp.route("/campaigns/<int:campaign_id>/<any(pause, resume, cancel):action>", methods=["POST"])
def campaign_change(campaign_id: int, action: str):
    try:
        change_campaign(
            request_session(), redis_client(), campaign_id, action, request.form.get("catch_up") == "on"
        )
    except DomainError as error:
        flash(error.message, "error")
    else:
        flash({"pause": "Paused.", "resume": "Resumed.", "cancel": "Cancelled."}[action])
    return redirect(url_for("admin.campaign", campaign_id=campaign_id))
