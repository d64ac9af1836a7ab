"""Campaigns' lives: draft -> scheduled | running -> completed, with pause, resume, cancel.

One-time campaigns run once; triggered, recurring, drip and date campaigns stay running, each
start, occurrence or enrollment sending on its own."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from chatman.auth.accounts import find_user
from chatman.campaigns import drips, recurrence, variants
from chatman.campaigns.models import (
    CAMPAIGN_KINDS,
    ENROLLING_KINDS,
    Campaign,
    CampaignRun,
    CampaignSegment,
    CampaignStep,
)
from chatman.contacts.fields import validate_timezone
from chatman.contacts.models import Contact, Segment
from chatman.dialects import insert_ignore
from chatman.errors import Conflict, Invalid, NotFound
from chatman.ledger import sending
from chatman.messaging import send_window
from chatman.messaging.models import Template
from chatman.timeutils import NonexistentTime, local_to_utc, utcnow

EDITABLE = ("name", "owner", "utm_campaign", "trigger_event")
# Occurrences looked at past a long downtime (a minutely cron down for a week): the rest are
# neither run nor recorded.
MAX_MISSED = 1000
EVENT_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}\Z")


def get_campaign(session: Session, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} not found")
    return campaign


def campaign_step(session: Session, campaign_id: int) -> CampaignStep:
    """The campaign's message (a drip's first step; variant A of an A/B campaign)."""
    return session.scalars(
        select(CampaignStep)
        .where(CampaignStep.campaign_id == campaign_id, CampaignStep.variant_of.is_(None))
        .order_by(CampaignStep.position)
        .limit(1)
    ).one()


def list_campaigns(
    session: Session, status: str | None = None, after: int | None = None, limit: int = 50
) -> list[Campaign]:
    query = select(Campaign).order_by(Campaign.id).limit(limit)
    if status:
        query = query.where(Campaign.status == status)
    if after:
        query = query.where(Campaign.id > after)
    return list(session.scalars(query))


def campaign_runs(session: Session, campaign_id: int) -> list[CampaignRun]:
    return list(
        session.scalars(
            select(CampaignRun)
            .where(CampaignRun.campaign_id == campaign_id)
            .order_by(CampaignRun.occurrence_at)
        )
    )


def campaign_segments(session: Session, campaign_id: int) -> dict[str, list[int]]:
    links: dict[str, list[int]] = {"include": [], "exclude": []}
    for segment_id, mode in session.execute(
        select(CampaignSegment.segment_id, CampaignSegment.mode)
        .where(CampaignSegment.campaign_id == campaign_id)
        .order_by(CampaignSegment.id)
    ):
        links[mode].append(segment_id)
    return links


def _set_message(session: Session, step: CampaignStep, data: Mapping[str, Any]) -> None:
    if "template_id" in data or "body" in data:
        template_id = data.get("template_id")
        # Looked up before it is set: an autoflush of an unknown id is a foreign-key error.
        if template_id is not None and session.get(Template, template_id) is None:
            raise Invalid("template_id", f"template {template_id} not found")
        step.template_id = template_id
        step.body = data.get("body")
    if (step.template_id is None) == (step.body is None):
        raise Invalid("template_id", "give either template_id (a template) or body (free text)")


def _set_variants(session: Session, campaign: Campaign, step: CampaignStep, data: Mapping[str, Any]) -> bool:
    """A/B variants and their test, when given (see campaigns.variants); True when the
    campaign now has variants, whose messages stand for the campaign's own."""
    current = variants.as_dicts(variants.steps(session, step))
    if "variants" not in data and "ab_test" not in data:
        return current is not None
    given = data.get("variants", current)
    if given is not None and "variants" not in data:  # as saved: only the message and share count
        given = [{k: v[k] for k in ("body", "template_id", "percent") if v[k] is not None} for v in given]
    ab_test = data.get("ab_test", campaign.ab_test)
    variants.check(campaign.kind, given, ab_test)
    if given and ({"template_id", "body"} & {k for k, v in data.items() if v is not None}):
        raise Invalid("variants", "with variants, each variant carries its message: no template_id or body")
    for i, variant in enumerate(given or []):
        template_id = variant.get("template_id")
        if template_id is not None and session.get(Template, template_id) is None:
            raise Invalid(f"variants[{i}].template_id", f"template {template_id} not found")
    campaign.ab_test = ab_test
    if "variants" in data:
        variants.save(session, campaign, step, given)
    return bool(given)


def _set_audience(session: Session, campaign: Campaign, data: Mapping[str, Any]) -> None:
    if campaign.kind == "triggered":
        if data.get("include_segments") or data.get("exclude_segments"):
            raise Invalid(
                "include_segments", "a triggered campaign sends to whoever triggers it: no segments"
            )
        return
    if "include_segments" not in data and "exclude_segments" not in data:
        return
    # A drip may take its contacts only from triggers, events or the API.
    optional = campaign.kind == "drip"
    current = campaign_segments(session, campaign.id)
    include = data.get("include_segments", current["include"])
    exclude = data.get("exclude_segments", current["exclude"])
    errors: dict[str, list[str]] = {}
    for field, ids in (("include_segments", include), ("exclude_segments", exclude)):
        for i, segment_id in enumerate(ids):
            if session.get(Segment, segment_id) is None:
                errors[f"{field}[{i}]"] = [f"segment {segment_id} not found"]
    if not include and not optional:
        errors["include_segments"] = ["a campaign needs at least one segment to send to"]
    if exclude and not include:
        errors["exclude_segments"] = ["exclude segments go with include segments"]
    if errors:
        raise Invalid.many(errors)
    session.execute(delete(CampaignSegment).where(CampaignSegment.campaign_id == campaign.id))
    for mode, ids in (("include", include), ("exclude", exclude)):
        for segment_id in dict.fromkeys(ids):
            session.add(CampaignSegment(campaign_id=campaign.id, segment_id=segment_id, mode=mode))


def _owner(session: Session, email: str | None) -> str | None:
    """The owner is a user of this install, named by e-mail."""
    if email is None:
        return None
    user = find_user(session, email)
    if user is None:
        raise Invalid("owner", f"no user with e-mail {email!r} (create one with: flask users create EMAIL)")
    return user.email


def _set_recurrence(campaign: Campaign, data: Mapping[str, Any]) -> None:
    if "recurrence" in data and data["recurrence"] is not None:
        if campaign.kind != "recurring":
            raise Invalid("recurrence", "only a recurring campaign has a recurrence")
        campaign.recurrence = recurrence.parse(data["recurrence"]).as_dict()
        campaign.timezone = campaign.recurrence["timezone"]
    if campaign.kind == "recurring" and campaign.recurrence is None:
        raise Invalid("recurrence", 'a recurring campaign needs its rule, e.g. {"every": "month", ...}')


def _check_kind(campaign: Campaign) -> None:
    if campaign.kind not in CAMPAIGN_KINDS:
        raise Invalid("kind", f"one of {', '.join(CAMPAIGN_KINDS)}")
    if campaign.trigger_event is not None:
        if campaign.kind not in ("triggered", "drip"):
            raise Invalid("trigger_event", "only a triggered or drip campaign starts on an event")
        if not EVENT_NAME.match(campaign.trigger_event):
            raise Invalid("trigger_event", "an event name: letters, digits and _ . : - (e.g. order_created)")


def create_campaign(session: Session, data: Mapping[str, Any]) -> Campaign:
    if not data.get("name"):
        raise Invalid("name", "a campaign needs a name")
    fields = {k: data.get(k) for k in EDITABLE} | {"owner": _owner(session, data.get("owner"))}
    campaign = Campaign(kind=data.get("kind") or "one_time", status="draft", **fields)
    _check_kind(campaign)
    _set_recurrence(campaign, data)
    _set_enrolling(session, campaign, data)
    _set_window(campaign, data)
    session.add(campaign)
    session.flush()
    if campaign.kind in ENROLLING_KINDS:
        drips.set_steps(session, campaign, _steps_given(campaign, data))
    else:
        step = CampaignStep(campaign_id=campaign.id, position=0)
        session.add(step)
        session.flush()
        if not _set_variants(session, campaign, step, data):
            _set_message(session, step, data)
    _set_audience(session, campaign, {"include_segments": [], **data})
    session.flush()
    return campaign


def _steps_given(campaign: Campaign, data: Mapping[str, Any]) -> Any:
    """A drip's steps; a date campaign may give its one message as template_id or body."""
    if data.get("steps") is None and campaign.kind == "date" and ("template_id" in data or "body" in data):
        return [{"template_id": data.get("template_id"), "body": data.get("body")}]
    return data.get("steps")


def _set_window(campaign: Campaign, data: Mapping[str, Any]) -> None:
    if "send_window" in data:
        window = send_window.parse(data["send_window"])
        campaign.send_window = window.as_dict() if window else None


def _set_enrolling(session: Session, campaign: Campaign, data: Mapping[str, Any]) -> None:
    """A drip's exits and re-entry or a date campaign's date rule, and the timezone of
    contacts without their own (a triggered campaign's too: its send window's)."""
    if "timezone" in data and data["timezone"] is not None:
        if campaign.kind not in (*ENROLLING_KINDS, "triggered"):
            where = (
                "its recurrence's" if campaign.kind == "recurring" else "the schedule's (POST .../schedule)"
            )
            raise Invalid("timezone", f"a {campaign.kind} campaign's timezone is {where}")
        campaign.timezone = validate_timezone(data["timezone"])
    if campaign.kind not in ENROLLING_KINDS:
        for field in ("steps", "drip", "date_field"):
            if data.get(field) is not None:
                raise Invalid(field, f"{field} goes with a drip or date campaign, not a {campaign.kind} one")
        return
    other = "date_field" if campaign.kind == "drip" else "drip"
    if data.get(other) is not None:
        raise Invalid(other, f"{other} goes with a {'date' if other == 'date_field' else 'drip'} campaign")
    own = "drip" if campaign.kind == "drip" else "date_field"
    if own in data or campaign.drip is None:
        if campaign.kind == "date" and data.get(own) is None and campaign.drip is None:
            raise Invalid(own, 'the date to send on, e.g. {"attribute": "birthday", "at": "10:00"}')
        campaign.drip = drips.parse_settings(session, campaign.kind, data.get(own))


def update_campaign(session: Session, campaign_id: int, data: Mapping[str, Any]) -> Campaign:
    campaign = get_campaign(session, campaign_id)
    live_drip = campaign.kind in ENROLLING_KINDS and campaign.status in ("running", "paused")
    if campaign.status != "draft" and not live_drip:
        raise Conflict(f"campaign {campaign_id} is {campaign.status}; only a draft can be changed")
    if live_drip and ({"include_segments", "exclude_segments", "timezone", "date_field"} & set(data)):
        raise Conflict(
            f"campaign {campaign_id} is {campaign.status}: its steps, exits and name can change, "
            "not its audience, timezone or date rule"
        )
    for key in EDITABLE:
        if key in data:
            setattr(campaign, key, _owner(session, data[key]) if key == "owner" else data[key])
    _check_kind(campaign)
    _set_recurrence(campaign, data)
    _set_enrolling(session, campaign, data)
    _set_window(campaign, data)
    if campaign.kind in ENROLLING_KINDS:
        if data.get("steps") is not None or (
            campaign.kind == "date" and ("template_id" in data or "body" in data)
        ):
            drips.set_steps(session, campaign, _steps_given(campaign, data))
    else:
        step = campaign_step(session, campaign_id)
        if not _set_variants(session, campaign, step, data):
            _set_message(session, step, data)
    _set_audience(session, campaign, data)
    session.flush()
    return campaign


def schedule(
    session: Session, campaign_id: int, send_at_local: datetime, timezone: str, now: datetime | None = None
) -> Campaign:
    """Schedule for a wall-clock time in `timezone`; stored in UTC, due by the clock."""
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id)
    if campaign.status not in ("draft", "scheduled"):
        raise Conflict(f"campaign {campaign_id} is {campaign.status}")
    if campaign.kind in ("triggered", "recurring"):
        raise Conflict(
            f"campaign {campaign_id} is {campaign.kind}: it sends when its trigger or occurrence comes"
        )
    validate_timezone(timezone)
    wall = (
        send_at_local.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
        if send_at_local.tzinfo
        else send_at_local
    )
    try:
        send_at = local_to_utc(wall, timezone)
    except OverflowError:
        raise Invalid("send_at", "this time is out of range once converted to UTC") from None
    except NonexistentTime as gap:  # a one-time send is not moved silently: the marketer picks
        raise Invalid("send_at", f"{gap}; pick another time, e.g. {gap.gap_end:%H:%M}") from None
    if send_at <= now:
        raise Invalid("send_at", f"{wall.isoformat()} in {timezone} is in the past")
    campaign.send_at, campaign.timezone, campaign.status = send_at, timezone, "scheduled"
    campaign.last_error = None
    return campaign


def launch(session: Session, campaign_id: int, now: datetime | None = None) -> CampaignRun | None:
    """Start the campaign's run (None for a triggered or recurring campaign: launching switches
    it on, and each trigger or occurrence starts a run of its own). The unique occurrence makes
    a second launch a Conflict."""
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id)
    if campaign.status not in ("draft", "scheduled"):
        raise Conflict(f"campaign {campaign_id} is {campaign.status}; it cannot be launched")
    for step in drips.steps_of(session, campaign_id):
        if step.template_id is not None:
            template = session.get(Template, step.template_id)
            if template.status != "approved":
                raise Invalid("template_id", f"template {template.name!r} is {template.status}, not approved")
    if campaign.kind in ENROLLING_KINDS:
        won = session.execute(
            update(Campaign)
            .where(Campaign.id == campaign.id, Campaign.status == "draft")
            .values(status="running", members_synced_at=None)
        ).rowcount
        if not won:
            raise Conflict(f"campaign {campaign_id} changed while launching")
        session.refresh(campaign)
        return None
    if campaign.kind in ("triggered", "recurring"):
        first = None
        if campaign.kind == "recurring":
            first = _next_occurrence(campaign, now)
            if first is None:
                raise Invalid("recurrence", "no occurrence of this rule is left after now")
        won = session.execute(
            update(Campaign)
            .where(Campaign.id == campaign.id, Campaign.status == "draft")
            .values(status="running", next_occurrence_at=first)
        ).rowcount
        if not won:
            raise Conflict(f"campaign {campaign_id} changed while launching")
        session.refresh(campaign)
        return None
    occurrence = campaign.send_at if campaign.status == "scheduled" else now
    run = CampaignRun(
        campaign_id=campaign.id,
        occurrence_at=occurrence,
        occurrence_key=occurrence.isoformat(),
        status="freezing",
        frozen_through=0,
        # A test group goes first; the rest waits for the winner (campaigns.variants).
        context={"ab": {"phase": "testing"}} if campaign.ab_test else None,
    )
    session.add(run)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"campaign {campaign_id} has already run for {occurrence.isoformat()}") from None
    # Conditional on the status read above: of two concurrent launches, one wins.
    won = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id, Campaign.status == campaign.status)
        .values(status="running", last_error=None)
    ).rowcount
    if not won:
        raise Conflict(f"campaign {campaign_id} changed while launching")
    session.refresh(campaign)
    return run


def unschedule(session: Session, campaign_id: int, reason: str) -> None:
    """A scheduled campaign that cannot be launched goes back to draft, saying why."""
    session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == "scheduled")
        .values(status="draft", last_error=reason)
    )


def _next_occurrence(campaign: Campaign, after: datetime) -> datetime | None:
    return next(recurrence.occurrences(recurrence.parse(campaign.recurrence), after), None)


def upcoming(
    session: Session, campaign_id: int, limit: int = 10, now: datetime | None = None
) -> tuple[str, list[datetime]]:
    """A recurring campaign's timezone and its next occurrences, UTC."""
    campaign = get_campaign(session, campaign_id)
    if campaign.kind != "recurring":
        raise Invalid(
            "kind", f"campaign {campaign_id} is {campaign.kind}; only a recurring one has occurrences"
        )
    rule = recurrence.parse(campaign.recurrence)
    return rule.timezone, recurrence.next_occurrences(rule, now or utcnow(), limit)


def launch_occurrences(session: Session, now: datetime, catch_up: timedelta) -> list[int]:
    """Start the runs of recurring campaigns whose next occurrence has come; returns their ids.

    Occurrences missed while the clock was down: the latest runs if it is younger than
    `catch_up`, every other one is recorded as a run skipped as `missed`. Each campaign moves
    on by a conditional UPDATE of its next occurrence, and each run is unique per occurrence,
    so two clocks at once start nothing twice. Commits per campaign."""
    started: list[int] = []
    due = session.scalars(
        select(Campaign)
        .where(Campaign.status == "running", Campaign.kind == "recurring", Campaign.next_occurrence_at <= now)
        .order_by(Campaign.next_occurrence_at)
    ).all()
    for campaign in due:
        rule = recurrence.parse(campaign.recurrence)
        since = campaign.next_occurrence_at
        missed = list(
            itertools.islice(
                itertools.takewhile(
                    lambda o: o <= now, recurrence.occurrences(rule, since - timedelta(microseconds=1))
                ),
                MAX_MISSED,
            )
        )
        following = next(recurrence.occurrences(rule, now), None)
        moved = session.execute(
            update(Campaign)
            .where(Campaign.id == campaign.id, Campaign.next_occurrence_at == since)
            .values(next_occurrence_at=following)
        ).rowcount
        if not moved:  # another clock took this one
            session.rollback()
            continue
        latest = missed[-1] if missed and now - missed[-1] <= catch_up else None
        key = ["campaign_id", "occurrence_key"]  # an occurrence that has its run keeps it
        _record_skipped(session, campaign.id, [o for o in missed if o != latest], "missed", now)
        if latest is not None and insert_ignore(session, CampaignRun, [_run_row(campaign.id, latest)], key):
            started.append(
                session.scalar(
                    select(CampaignRun.id).where(
                        CampaignRun.campaign_id == campaign.id,
                        CampaignRun.occurrence_key == latest.isoformat(),
                    )
                )
            )
        if following is None and latest is None:
            still_open = exists().where(
                CampaignRun.campaign_id == campaign.id, CampaignRun.status.in_(("freezing", "sending"))
            )
            session.execute(
                update(Campaign)
                .where(Campaign.id == campaign.id, ~still_open)
                .values(status="completed", completed_at=now)
            )
        session.commit()
    return started


def _record_skipped(
    session: Session, campaign_id: int, occurrences: list[datetime], reason: str, now: datetime
) -> None:
    """Runs, status skipped, for occurrences that send nothing (an occurrence that has its run
    keeps it)."""
    rows = [
        {**_run_row(campaign_id, o), "status": "skipped", "context": {"skipped": reason}, "completed_at": now}
        for o in occurrences
    ]
    insert_ignore(session, CampaignRun, rows, ["campaign_id", "occurrence_key"])


def _run_row(campaign_id: int, occurrence: datetime) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "occurrence_at": occurrence,
        "occurrence_key": occurrence.isoformat(),
        "status": "freezing",
        "frozen_through": 0,
    }


def due_campaigns(session: Session, now: datetime | None = None) -> list[int]:
    """Scheduled campaigns whose time has come (the database, not Redis, says what is due)."""
    now = now or utcnow()
    return list(
        session.scalars(
            select(Campaign.id)
            .where(Campaign.status == "scheduled", Campaign.send_at <= now)
            .order_by(Campaign.send_at)
        )
    )


def active_runs(session: Session, campaign_id: int) -> list[int]:
    return list(
        session.scalars(
            select(CampaignRun.id).where(
                CampaignRun.campaign_id == campaign_id, CampaignRun.status.in_(("freezing", "sending"))
            )
        )
    )


def set_status(
    session: Session, campaign_id: int, action: str, catch_up: bool = False, now: datetime | None = None
) -> Campaign:
    """pause, resume or cancel. A resume goes on from now: a recurring campaign's occurrences
    that passed meanwhile are recorded as skipped (`paused`), and a drip's waiting contacts
    are due that much later; with `catch_up`, what fell due meanwhile is done now (a recurring
    campaign's by the catch-up rule of missed occurrences)."""
    allowed = {
        "pause": ({"running"}, "paused"),
        "resume": ({"paused"}, "running"),
        "cancel": ({"draft", "scheduled", "running", "paused"}, "cancelled"),
    }
    sources, target = allowed[action]
    campaign = get_campaign(session, campaign_id)
    if campaign.status not in sources:
        raise Conflict(f"campaign {campaign_id} is {campaign.status}; cannot {action}")
    now = now or utcnow()
    values: dict[str, Any] = {"status": target}
    if action == "resume" and campaign.kind == "recurring" and not catch_up:
        values["next_occurrence_at"] = _next_occurrence(campaign, now)
    if action in ("pause", "resume"):
        values["paused_at"] = now if action == "pause" else None
    # As they were: the UPDATE writes the new values onto `campaign` too.
    paused_at, next_occurrence = campaign.paused_at, campaign.next_occurrence_at
    won = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status == campaign.status)
        .values(**values)
    ).rowcount
    if not won:
        raise Conflict(f"campaign {campaign_id} changed meanwhile; try again")
    if action == "resume" and not catch_up:
        if campaign.kind == "recurring" and next_occurrence is not None:
            rule = recurrence.parse(campaign.recurrence)
            since = next_occurrence - timedelta(microseconds=1)
            passed = itertools.takewhile(lambda o: o <= now, recurrence.occurrences(rule, since))
            _record_skipped(session, campaign_id, list(itertools.islice(passed, MAX_MISSED)), "paused", now)
        if campaign.kind in ENROLLING_KINDS and paused_at is not None:
            drips.shift_waits(session, campaign_id, now - paused_at)
    if action == "cancel":
        drips.end_enrollments(session, campaign_id, "campaign_cancelled", now)
        # Rows no batch has taken are skipped now; batches already sending finish their rows.
        runs = list(
            session.scalars(
                select(CampaignRun.id).where(
                    CampaignRun.campaign_id == campaign_id, CampaignRun.status.in_(("freezing", "sending"))
                )
            )
        )
        sending.skip_pending(session, runs, "cancelled")
        session.execute(update(CampaignRun).where(CampaignRun.id.in_(runs)).values(status="cancelled"))
    session.refresh(campaign)
    return campaign


def enroll_contacts(session: Session, campaign_id: int, contact_ids: list[int]) -> list[int]:
    """The API's enrollment: contacts who entered now (one already in stays where it is)."""
    campaign = get_campaign(session, campaign_id)
    if campaign.kind != "drip":
        raise Invalid("kind", f"campaign {campaign_id} is {campaign.kind}; contacts are enrolled in a drip")
    if campaign.status not in ("running", "paused"):
        raise Conflict(f"campaign {campaign_id} is {campaign.status}; launch it before enrolling contacts")
    found = set(session.scalars(select(Contact.id).where(Contact.id.in_(contact_ids))))
    missing = {
        f"contact_ids[{i}]": [f"contact {c} not found"] for i, c in enumerate(contact_ids) if c not in found
    }
    if missing:
        raise Invalid.many(missing)
    return drips.enroll(session, campaign_id, contact_ids, "api")
