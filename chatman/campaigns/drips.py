"""Drip and date-field campaigns: their steps, enrollments, and moving contacts on in time.

A drip sends its steps in order, each after a wait counted from the enrollment or from the
previous step; a date-field campaign sends its one step on (or N days before or after) a date
attribute of the contact, once or every year. Both keep one enrollment row per (campaign,
contact) holding the next step and when it is due, and send through the ledger and the send
pipeline like every other campaign (one message per run, step and contact).

Stated rules (README, tests/campaigns/test_drips.py):
- minutes and hours are durations; days and weeks are calendar days in the contact's timezone
  (else the campaign's, else UTC), so 10:00 stays 10:00 across a clock change; a wait with
  `at` lands at that local time; a local time in the spring-forward gap runs at the gap's end.
- a step's condition looks at what an earlier step's message did when the step falls due; a
  step whose condition does not hold is recorded as skipped (`condition_not_met`) and the
  contact moves on to the next step.
- exits (`exit_on`): a contact who replies, opts out, reaches the goal attribute value or
  leaves the campaign's segments leaves with that reason; a DND contact always leaves; a
  cancelled campaign ends every enrollment (`campaign_cancelled`).
- a contact enters once; with `reentry_after_days` one who finished or left may enter again
  after that many days, as a new run (so its steps can be sent again).
- editing a running drip: a step a contact was sent is never sent again; a contact who has
  not reached a step gets its new version (message, condition, and wait counted from the same
  start). Steps may be added at the end; one that contacts already reached cannot be removed.
- pause stops every step; resume moves each waiting contact's due time on by the length of
  the pause (nothing that fell due during the pause goes out in a burst, nothing is dropped).
- date-field: a contact without the date is not enrolled; a changed date reschedules; a fire
  time already past when the contact is enrolled waits for the next year (`repeat: yearly`)
  or is not sent (`repeat: once`); 29 February falls on 28 February in other years.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from chatman.campaigns.audience import audience_condition
from chatman.campaigns.models import Campaign, CampaignRun, CampaignStep, Enrollment
from chatman.contacts.attributes import attribute_types
from chatman.contacts.models import Contact
from chatman.dialects import insert_ignore, insert_ignore_returning
from chatman.errors import Conflict, Invalid
from chatman.ledger import counters, states
from chatman.ledger.models import Message
from chatman.messaging.models import InboundMessage, Template
from chatman.timeutils import run_instant, utcnow, zone_of

WAIT_UNITS = ("minutes", "hours", "days", "weeks")
MAX_WAIT = {"minutes": 60 * 24 * 366, "hours": 24 * 366, "days": 3660, "weeks": 520}
CONDITIONS = ("not_delivered", "not_read", "not_replied", "tapped")
EXITS = ("replied", "opted_out", "goal_reached", "left_segment")
DEFAULT_EXITS = ["opted_out", "left_segment"]
MAX_STEPS = 50
MAX_OFFSET_DAYS = 366
# Enrollments one job moves on, and how long a claim keeps others off them: a job that died
# leaves its rows due again after that (moving on twice sends nothing twice: the ledger's key).
ADVANCE_BATCH = 500
CLAIM_FOR = timedelta(minutes=5)
SYNC_PAGE = 5000
HHMM_FORMAT = "%H:%M"


# -- rules as marketers write them ---------------------------------------------------------


def _hhmm(value: Any, field: str) -> str:
    try:
        if isinstance(value, str) and len(value) == 5:
            datetime.strptime(value, HHMM_FORMAT)
            return value
    except ValueError:
        pass
    raise Invalid(field, "a local time HH:MM, e.g. 10:00")


def parse_wait(spec: Any, field: str, first: bool) -> dict[str, Any]:
    """{"days": 1, "after": "previous"|"enrollment", "at": "10:00"}; no unit: at once."""
    spec = {} if spec is None else spec
    if not isinstance(spec, Mapping):
        raise Invalid(field, 'a wait, e.g. {"days": 2, "at": "10:00"} or {"hours": 4}')
    unknown = set(spec) - {*WAIT_UNITS, "after", "at"}
    if unknown:
        raise Invalid(
            f"{field}.{sorted(unknown)[0]}",
            f"not a wait field: use one of {', '.join(WAIT_UNITS)}, after, at",
        )
    units = [u for u in WAIT_UNITS if u in spec]
    if len(units) > 1:
        raise Invalid(field, f"give one unit, not {' and '.join(units)}")
    wait: dict[str, Any] = {}
    if units:
        unit = units[0]
        amount = spec[unit]
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_WAIT[unit]:
            raise Invalid(f"{field}.{unit}", f"a whole number from 0 to {MAX_WAIT[unit]}")
        wait[unit] = amount
    after = spec.get("after", "previous")
    if after not in ("previous", "enrollment"):
        raise Invalid(f"{field}.after", "previous (the step before) or enrollment")
    if after == "previous" and not first:
        wait["after"] = "previous"
    else:
        wait["after"] = "enrollment"
    if "at" in spec:
        if not any(u in wait for u in ("days", "weeks")):
            raise Invalid(f"{field}.at", "a time of day goes with a wait in days or weeks")
        wait["at"] = _hhmm(spec["at"], f"{field}.at")
    return wait


def parse_condition(spec: Any, field: str, index: int) -> dict[str, Any] | None:
    """{"if": "not_replied", "step": 1, "button": "Yes"}: `step` is an earlier step's number
    (1 is the first; the previous one by default)."""
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise Invalid(field, 'a condition, e.g. {"if": "not_replied"}')
    if spec.get("if") not in CONDITIONS:
        raise Invalid(f"{field}.if", f"one of {', '.join(CONDITIONS)}")
    if index == 0:
        raise Invalid(field, "the first step has no earlier step for its condition to look at")
    number = spec.get("step", index)
    if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= index:
        raise Invalid(
            f"{field}.step", f"the number of an earlier step, from 1 to {index} (this is step {index + 1})"
        )
    condition: dict[str, Any] = {"if": spec["if"], "step": number}
    if spec["if"] == "tapped":
        button = spec.get("button")
        if not isinstance(button, str) or not 1 <= len(button) <= 256:
            raise Invalid(f"{field}.button", "the text or id of the button the contact tapped")
        condition["button"] = button
    elif "button" in spec:
        raise Invalid(f"{field}.button", "a button goes with if: tapped")
    return condition


def parse_steps(session: Session, specs: Any, kind: str) -> list[dict[str, Any]]:
    """Check a drip's (or a date campaign's one) steps; each keeps its `id` when it has one."""
    if not isinstance(specs, list) or not specs:
        raise Invalid("steps", "a list of steps, each with its message (template_id or body)")
    if kind == "date" and len(specs) != 1:
        raise Invalid("steps", "a date campaign sends one message: give one step")
    if len(specs) > MAX_STEPS:
        raise Invalid("steps", f"at most {MAX_STEPS} steps")
    steps: list[dict[str, Any]] = []
    errors: dict[str, list[str]] = {}
    for i, spec in enumerate(specs):
        field = f"steps[{i}]"
        try:
            if not isinstance(spec, Mapping):
                raise Invalid(field, "a step: its message, optionally wait and condition")
            template_id, body = spec.get("template_id"), spec.get("body")
            if (template_id is None) == (body is None):
                raise Invalid(field, "give either template_id (a template) or body (free text)")
            if template_id is not None and session.get(Template, template_id) is None:
                raise Invalid(f"{field}.template_id", f"template {template_id} not found")
            if kind == "date" and (spec.get("wait") or spec.get("condition")):
                raise Invalid(field, "a date campaign's step is sent on the date: no wait or condition")
            steps.append(
                {
                    "id": spec.get("id"),
                    "template_id": template_id,
                    "body": body,
                    "wait": parse_wait(spec.get("wait"), f"{field}.wait", i == 0),
                    "condition": parse_condition(spec.get("condition"), f"{field}.condition", i),
                }
            )
        except Invalid as error:
            errors.update(error.errors)
    if errors:
        raise Invalid.many(errors)
    return steps


def parse_settings(session: Session, kind: str, spec: Any) -> dict[str, Any]:
    """A drip's exits and re-entry, or a date campaign's date rule."""
    spec = spec or {}
    if not isinstance(spec, Mapping):
        raise Invalid("drip" if kind == "drip" else "date_field", "an object")
    if kind == "date":
        return _date_rule(session, spec)
    exits = spec.get("exit_on", DEFAULT_EXITS)
    if not isinstance(exits, list) or any(e not in EXITS for e in exits):
        raise Invalid("drip.exit_on", f"a list of: {', '.join(EXITS)}")
    settings: dict[str, Any] = {"exit_on": list(dict.fromkeys(exits))}
    goal = spec.get("goal")
    if goal is not None:
        if not isinstance(goal, Mapping) or not isinstance(goal.get("attribute"), str) or "value" not in goal:
            raise Invalid(
                "drip.goal",
                'the attribute and the value that end the drip, e.g. {"attribute": "plan", "value": "paid"}',
            )
        if goal["attribute"] not in attribute_types(session):
            raise Invalid("drip.goal.attribute", f"no contact attribute named {goal['attribute']!r}")
        settings["goal"] = {"attribute": goal["attribute"], "value": goal["value"]}
        settings["exit_on"] = list(dict.fromkeys([*settings["exit_on"], "goal_reached"]))
    elif "goal_reached" in settings["exit_on"]:
        raise Invalid("drip.goal", "exit_on goal_reached needs the goal")
    reentry = spec.get("reentry_after_days")
    if reentry is not None:
        if isinstance(reentry, bool) or not isinstance(reentry, int) or not 0 <= reentry <= 3660:
            raise Invalid(
                "drip.reentry_after_days", "a whole number of days from 0 to 3660, or null (enter once)"
            )
        settings["reentry_after_days"] = reentry
    return settings


def _date_rule(session: Session, spec: Mapping[str, Any]) -> dict[str, Any]:
    attribute = spec.get("attribute")
    if not isinstance(attribute, str):
        raise Invalid("date_field.attribute", "the date attribute to send on, e.g. birthday")
    kind = attribute_types(session).get(attribute)
    if kind is None:
        raise Invalid("date_field.attribute", f"no contact attribute named {attribute!r}")
    if kind != "date":
        raise Invalid("date_field.attribute", f"{attribute!r} holds {kind}s, not dates")
    offset = spec.get("offset_days", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or abs(offset) > MAX_OFFSET_DAYS:
        raise Invalid(
            "date_field.offset_days",
            f"days before (negative) or after the date, from -{MAX_OFFSET_DAYS} to {MAX_OFFSET_DAYS}",
        )
    repeat = spec.get("repeat", "yearly")
    if repeat not in ("yearly", "once"):
        raise Invalid("date_field.repeat", "yearly (a birthday) or once (a renewal date)")
    return {
        "attribute": attribute,
        "offset_days": offset,
        "at": _hhmm(spec.get("at", "10:00"), "date_field.at"),
        "repeat": repeat,
    }


# -- when things fall due -------------------------------------------------------------------


def due_after(base: datetime, wait: Mapping[str, Any], zone: str) -> datetime:
    """When a step with this wait falls due, counted from `base` (UTC)."""
    for unit in ("minutes", "hours"):
        if unit in wait:
            return base + timedelta(**{unit: wait[unit]})
    days = wait.get("days", 0) + 7 * wait.get("weeks", 0)
    if not days and "at" not in wait:
        return base
    local = base.astimezone(ZoneInfo(zone))
    at = (
        datetime.strptime(wait["at"], HHMM_FORMAT).time()
        if "at" in wait
        else local.time().replace(tzinfo=None)
    )
    return run_instant(datetime.combine(local.date() + timedelta(days=days), at), zone)


def parse_date_value(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def date_fire(value: date, rule: Mapping[str, Any], zone: str, after: datetime) -> datetime | None:
    """The first fire of a date rule after `after` (UTC), or None when there is none."""
    at = datetime.strptime(rule["at"], HHMM_FORMAT).time()

    def fire(day: date) -> datetime:
        return run_instant(datetime.combine(day + timedelta(days=rule["offset_days"]), at), zone)

    if rule["repeat"] == "once":
        instant = fire(value)
        return instant if instant > after else None
    year = after.astimezone(ZoneInfo(zone)).year
    for candidate in range(year - 1, year + 3):
        instant = fire(value + relativedelta(year=candidate))  # 29 Feb -> 28 Feb
        if instant > after:
            return instant
    return None


# -- steps of a campaign ----------------------------------------------------------------------


def steps_of(session: Session, campaign_id: int) -> list[CampaignStep]:
    return list(
        session.scalars(
            select(CampaignStep)
            .where(CampaignStep.campaign_id == campaign_id)
            .order_by(CampaignStep.position)
        )
    )


def set_steps(session: Session, campaign: Campaign, specs: Any) -> None:
    """Replace a draft's steps, or edit a running drip's by the stated rule."""
    steps = parse_steps(session, specs, campaign.kind)
    current = steps_of(session, campaign.id)
    by_id = {s.id: s for s in current}
    if campaign.status == "draft":
        for step in current:
            session.delete(step)
        session.flush()
        by_id = {}
    errors: dict[str, list[str]] = {}
    kept = [s["id"] for s in steps if s["id"] is not None] if campaign.status != "draft" else []
    for i, step in enumerate(steps):
        if step["id"] is not None and campaign.status != "draft" and step["id"] not in by_id:
            errors[f"steps[{i}].id"] = [f"step {step['id']} is not a step of this campaign"]
    first_new = next((k for k, s in enumerate(steps) if s["id"] is None), len(steps))
    positions = [by_id[i].position for i in kept if i in by_id]
    if kept and (
        positions != sorted(positions)
        or len(set(kept)) != len(kept)
        or any(s["id"] is not None for s in steps[first_new:])
    ):
        errors["steps"] = [
            "the steps a running campaign has keep their order (give their ids); add new ones at the end"
        ]
    removed = [s for s in current if s.id not in set(kept)] if campaign.status != "draft" else []
    if removed and not errors:
        reached = session.scalar(
            select(Message.step_id).where(Message.step_id.in_([s.id for s in removed])).limit(1)
        )
        if reached is not None:
            raise Conflict(
                f"step {reached} was already sent to contacts and cannot be removed from a running campaign"
            )
    if errors:
        raise Invalid.many(errors)
    for step in removed:
        session.delete(step)
    session.flush()
    changed: list[int] = []
    for position, spec in enumerate(steps):
        row = by_id.get(spec["id"]) if spec["id"] is not None and campaign.status != "draft" else None
        if row is None:
            row = CampaignStep(campaign_id=campaign.id)
            session.add(row)
        elif row.wait != spec["wait"] or row.position != position:
            changed.append(position)
        # Positions move through a free range first: (campaign, position) is unique.
        row.position = position + 1000
        row.template_id, row.body = spec["template_id"], spec["body"]
        row.wait, row.condition = spec["wait"], spec["condition"]
    session.flush()
    for position, row in enumerate(steps_of(session, campaign.id)):
        row.position = position
    session.flush()
    if changed and campaign.status in ("running", "paused"):
        # A contact waiting for a changed step is looked at again now: its due time is
        # recomputed from the same start by the new wait.
        session.execute(
            update(Enrollment)
            .where(
                Enrollment.campaign_id == campaign.id,
                Enrollment.status == "active",
                Enrollment.next_step.in_(changed),
            )
            .values(next_due_at=Enrollment.waiting_since)
        )


def step_dicts(session: Session, campaign_id: int) -> list[dict[str, Any]]:
    return [
        {
            "id": s.id,
            "template_id": s.template_id,
            "body": s.body,
            "wait": s.wait or {},
            "condition": s.condition,
        }
        for s in steps_of(session, campaign_id)
    ]


# -- enrolling ------------------------------------------------------------------------------------


def entry_run(session: Session, campaign_id: int, key: str, now: datetime) -> int:
    """The run that holds one entry (drip) or one year (date campaign) of a campaign's sends."""
    insert_ignore(
        session,
        CampaignRun,
        [
            {
                "campaign_id": campaign_id,
                "occurrence_at": now,
                "occurrence_key": key,
                "status": "sending",
                "frozen_through": 0,
                "progress_at": now,
            }
        ],
        ["campaign_id", "occurrence_key"],
    )
    return session.scalar(
        select(CampaignRun.id).where(
            CampaignRun.campaign_id == campaign_id, CampaignRun.occurrence_key == key
        )
    )


def enroll(
    session: Session, campaign_id: int, contact_ids: Iterable[int], source: str, now: datetime | None = None
) -> list[int]:
    """Enroll contacts in a running drip (a trigger, an event, the API, a segment); returns
    the contacts enrolled. One already in is left alone; one who finished or left enters
    again only when the campaign allows re-entry and its interval has passed."""
    now = now or utcnow()
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.kind != "drip" or campaign.status not in ("running", "paused"):
        return []
    ids = sorted(set(contact_ids))
    if not ids:
        return []
    run_id = entry_run(session, campaign_id, "entry-1", now)
    new = [
        {
            "campaign_id": campaign_id,
            "contact_id": contact_id,
            "run_id": run_id,
            "entry": 1,
            "source": source,
            "status": "active",
            "next_step": 0,
            "waiting_since": now,
            "next_due_at": now,
            "enrolled_at": now,
        }
        for contact_id in ids
    ]
    existing = set(
        session.scalars(
            select(Enrollment.contact_id).where(
                Enrollment.campaign_id == campaign_id, Enrollment.contact_id.in_(ids)
            )
        )
    )
    insert_ignore(
        session,
        Enrollment,
        [r for r in new if r["contact_id"] not in existing],
        ["campaign_id", "contact_id"],
    )
    entered = [i for i in ids if i not in existing]
    return entered + _reenter(session, campaign, existing, source, now)


def _reenter(
    session: Session, campaign: Campaign, contact_ids: Iterable[int], source: str, now: datetime
) -> list[int]:
    days = (campaign.drip or {}).get("reentry_after_days")
    ids = list(contact_ids)
    if days is None or not ids:
        return []
    again = session.execute(
        select(Enrollment.id, Enrollment.contact_id, Enrollment.entry).where(
            Enrollment.campaign_id == campaign.id,
            Enrollment.contact_id.in_(ids),
            Enrollment.status != "active",
            Enrollment.enrolled_at <= now - timedelta(days=days),
        )
    ).all()
    entered: list[int] = []
    for enrollment_id, contact_id, entry in again:
        run_id = entry_run(session, campaign.id, f"entry-{entry + 1}", now)
        moved = session.execute(
            update(Enrollment)
            .where(Enrollment.id == enrollment_id, Enrollment.entry == entry, Enrollment.status != "active")
            .values(
                entry=entry + 1,
                run_id=run_id,
                source=source,
                status="active",
                next_step=0,
                waiting_since=now,
                next_due_at=now,
                enrolled_at=now,
                finished_at=None,
                exit_reason=None,
            )
        ).rowcount
        if moved:
            entered.append(contact_id)
    return entered


def sync_members(session: Session, campaign_id: int, now: datetime | None = None) -> int:
    """Enroll the campaign's segment members who are not enrolled yet (a live segment's new
    members, page by page, committing each), and for a date campaign reschedule contacts whose
    date changed. Returns contacts enrolled or rescheduled."""
    now = now or utcnow()
    campaign = session.get(Campaign, campaign_id)
    if campaign is None or campaign.status not in ("running", "paused"):
        return 0
    condition = audience_condition(session, campaign_id)
    done = 0
    last = 0
    while True:
        enrolled = select(Enrollment.id).where(
            Enrollment.campaign_id == campaign_id, Enrollment.contact_id == Contact.id
        )
        rows = session.execute(
            select(Contact.id, Contact.attributes, Contact.timezone)
            .where(condition, Contact.id > last, ~enrolled.exists(), Contact.dnd.is_(False))
            .order_by(Contact.id)
            .limit(SYNC_PAGE)
        ).all()
        if not rows:
            break
        last = rows[-1].id
        if campaign.kind == "drip":
            done += len(enroll(session, campaign_id, [r.id for r in rows], "segment", now))
        else:
            done += _enroll_dates(session, campaign, rows, now)
        session.commit()
    if campaign.kind == "drip" and (campaign.drip or {}).get("reentry_after_days") is not None:
        finished = list(
            session.scalars(
                select(Enrollment.contact_id)
                .join(Contact, Contact.id == Enrollment.contact_id)
                .where(Enrollment.campaign_id == campaign_id, Enrollment.status != "active", condition)
            )
        )
        done += len(_reenter(session, campaign, finished, "segment", now))
    if campaign.kind == "date":
        done += _reschedule_dates(session, campaign, now)
    session.execute(update(Campaign).where(Campaign.id == campaign_id).values(members_synced_at=now))
    session.commit()
    return done


def _enroll_dates(session: Session, campaign: Campaign, rows: Sequence, now: datetime) -> int:
    rule = campaign.drip
    new = []
    for contact_id, attributes, zone in rows:
        value = parse_date_value((attributes or {}).get(rule["attribute"]))
        if value is None:  # no date: not enrolled (a date set later enrolls at the next sync)
            continue
        due = date_fire(value, rule, zone_of(zone, campaign.timezone), now)
        if due is None:
            continue
        new.append(
            {
                "campaign_id": campaign.id,
                "contact_id": contact_id,
                "run_id": _year_run(session, campaign, due, zone),
                "entry": 1,
                "source": "date",
                "status": "active",
                "next_step": 0,
                "waiting_since": now,
                "next_due_at": due,
                "basis": value.isoformat(),
                "enrolled_at": now,
            }
        )
    return insert_ignore(session, Enrollment, new, ["campaign_id", "contact_id"])


def _year_run(session: Session, campaign: Campaign, due: datetime, zone: str | None) -> int:
    if campaign.drip["repeat"] == "once":
        return entry_run(session, campaign.id, "once", due)
    year = due.astimezone(ZoneInfo(zone_of(zone, campaign.timezone))).year
    return entry_run(session, campaign.id, f"year-{year}", due)


def _reschedule_dates(session: Session, campaign: Campaign, now: datetime) -> int:
    """Active enrollments whose date attribute no longer says what their due time came from."""
    rule = campaign.drip
    current = Contact.attributes[rule["attribute"]].as_string()
    rows = session.execute(
        select(Enrollment.id, Enrollment.basis, current, Contact.timezone)
        .join(Contact, Contact.id == Enrollment.contact_id)
        .where(
            Enrollment.campaign_id == campaign.id,
            Enrollment.status == "active",
            (current.is_(None)) | (current != Enrollment.basis),
        )
    ).all()
    for enrollment_id, basis, value, zone in rows:
        _reschedule_date(session, campaign, enrollment_id, basis, value, zone, now)
    return len(rows)


def _reschedule_date(
    session: Session,
    campaign: Campaign,
    enrollment_id: int,
    basis: str | None,
    value: Any,
    zone: str | None,
    now: datetime,
) -> None:
    day = parse_date_value(value)
    due = date_fire(day, campaign.drip, zone_of(zone, campaign.timezone), now) if day else None
    values: dict[str, Any] = (
        {"status": "exited", "exit_reason": "no_date", "next_due_at": None, "finished_at": now}
        if day is None
        else {"status": "completed", "next_due_at": None, "finished_at": now}
        if due is None
        else {"next_due_at": due, "basis": day.isoformat(), "run_id": _year_run(session, campaign, due, zone)}
    )
    session.execute(
        update(Enrollment)
        .where(Enrollment.id == enrollment_id, Enrollment.status == "active", _same(Enrollment.basis, basis))
        .values(**values)
    )


def _same(column, value):
    return column.is_(None) if value is None else column == value


# -- the clock's part -------------------------------------------------------------------------


def claim_due(session: Session, now: datetime, limit: int = ADVANCE_BATCH) -> list[int]:
    """Take up to `limit` enrollments of running campaigns that are due, by moving their due
    time on by CLAIM_FOR (a conditional UPDATE: of two clocks, one gets each row). Commits."""
    ids = list(
        session.scalars(
            select(Enrollment.id)
            .join(Campaign, Campaign.id == Enrollment.campaign_id)
            .where(Enrollment.status == "active", Enrollment.next_due_at <= now, Campaign.status == "running")
            .order_by(Enrollment.next_due_at)
            .limit(limit)
        )
    )
    if not ids:
        return []
    claimed = list(
        session.scalars(
            update(Enrollment)
            .where(Enrollment.id.in_(ids), Enrollment.status == "active", Enrollment.next_due_at <= now)
            .values(next_due_at=now + CLAIM_FOR)
            .returning(Enrollment.id),
            execution_options={"synchronize_session": False},
        )
    )
    session.commit()
    return claimed


def any_due(session: Session, now: datetime) -> bool:
    return (
        session.scalar(
            select(Enrollment.id)
            .join(Campaign, Campaign.id == Enrollment.campaign_id)
            .where(Enrollment.status == "active", Enrollment.next_due_at <= now, Campaign.status == "running")
            .limit(1)
        )
        is not None
    )


def campaigns_to_sync(session: Session, now: datetime, every: timedelta) -> list[int]:
    """Running drip and date campaigns with segments whose members were not enrolled lately."""
    return list(
        session.scalars(
            select(Campaign.id).where(
                Campaign.kind.in_(("drip", "date")),
                Campaign.status == "running",
                (Campaign.members_synced_at.is_(None)) | (Campaign.members_synced_at <= now - every),
            )
        )
    )


@dataclass
class Moved:
    """What moving enrollments on made: pending messages to send, per run, and the messages
    written as skipped (rules may look at those)."""

    to_send: dict[int, list[int]]
    skipped: list[int]


def advance(session: Session, enrollment_ids: Sequence[int], now: datetime | None = None) -> Moved:
    """Move these enrollments on: exits first, then the step that is due (its message
    inserted into the ledger, or skipped when its condition does not hold), then the next
    step's due time. Commits."""
    now = now or utcnow()
    rows = session.execute(
        select(Enrollment, Contact.dnd, Contact.last_inbound_at, Contact.attributes, Contact.timezone)
        .join(Contact, Contact.id == Enrollment.contact_id)
        .where(Enrollment.id.in_(list(enrollment_ids)), Enrollment.status == "active")
        .order_by(Enrollment.id)
    ).all()
    by_campaign: dict[int, list] = defaultdict(list)
    for row in rows:
        by_campaign[row.Enrollment.campaign_id].append(row)
    to_send: dict[int, list[int]] = defaultdict(list)
    skipped: list[int] = []
    for campaign_id, group in by_campaign.items():
        campaign = session.get(Campaign, campaign_id)
        if campaign.status != "running":
            continue  # paused: left due, taken again once resumed
        mover = _Mover(session, campaign, now)
        mover.move(group)
        mover.write()
        for run_id, ids in mover.insert_messages().items():
            to_send[run_id] += ids
        skipped += mover.skipped
    session.commit()
    return Moved(dict(to_send), skipped)


class _Mover:
    def __init__(self, session: Session, campaign: Campaign, now: datetime) -> None:
        self.session, self.campaign, self.now = session, campaign, now
        self.steps = steps_of(session, campaign.id)
        self.settings = campaign.drip or {}
        # (run, step, contact) -> skip reason (None: to send)
        self.messages: dict[tuple[int, int, int], str | None] = {}
        self.skipped: list[int] = []  # the ids of those inserted as skipped
        # columns moved -> the enrollments moved so (see _update)
        self.updates: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)

    def move(self, group: Sequence) -> None:
        exits = self._exits(group) if self.campaign.kind == "drip" else {}
        earlier = self._earlier_messages(group)
        for row in group:
            enrollment = row.Enrollment
            zone = zone_of(row.timezone, self.campaign.timezone)
            if enrollment.id in exits:
                self._finish(enrollment, "exited", exits[enrollment.id])
            elif self.campaign.kind == "date":
                self._fire_date(row, zone)
            else:
                self._step(row, zone, earlier)

    def _exits(self, group: Sequence) -> dict[int, str]:
        exit_on = set(self.settings.get("exit_on", DEFAULT_EXITS))
        goal = self.settings.get("goal")
        left: set[int] = set()
        if "left_segment" in exit_on:
            segment_ids = [r.Enrollment.contact_id for r in group if r.Enrollment.source == "segment"]
            if segment_ids:
                inside = set(
                    self.session.scalars(
                        select(Contact.id).where(
                            Contact.id.in_(segment_ids), audience_condition(self.session, self.campaign.id)
                        )
                    )
                )
                left = set(segment_ids) - inside
        exits: dict[int, str] = {}
        for row in group:
            enrollment = row.Enrollment
            if row.dnd:
                exits[enrollment.id] = "opted_out"
            elif (
                "replied" in exit_on and row.last_inbound_at and row.last_inbound_at > enrollment.enrolled_at
            ):
                exits[enrollment.id] = "replied"
            elif goal and (row.attributes or {}).get(goal["attribute"]) == goal["value"]:
                exits[enrollment.id] = "goal_reached"
            elif enrollment.contact_id in left:
                exits[enrollment.id] = "left_segment"
        return exits

    def _earlier_messages(self, group: Sequence) -> dict[tuple[int, int, int], Message]:
        """The messages the due steps' conditions look at."""
        wanted: set[int] = set()
        for row in group:
            index = row.Enrollment.next_step
            if index < len(self.steps) and self.steps[index].condition:
                wanted.add(self.steps[self.steps[index].condition["step"] - 1].id)
        if not wanted:
            return {}
        found = self.session.scalars(
            select(Message).where(
                Message.run_id.in_({r.Enrollment.run_id for r in group}),
                Message.step_id.in_(wanted),
                Message.contact_id.in_([r.Enrollment.contact_id for r in group]),
            )
        )
        return {(m.run_id, m.step_id, m.contact_id): m for m in found}

    def _holds(
        self, condition: Mapping[str, Any], message: Message | None, last_inbound: datetime | None
    ) -> bool:
        kind = condition["if"]
        if kind == "not_delivered":
            return message is None or message.delivered_at is None
        if kind == "not_read":
            return message is None or message.read_at is None
        if kind == "not_replied":  # replied: wrote to us after it was sent (or quoted it)
            sent = message.submitted_at if message is not None else None
            wrote = last_inbound is not None and sent is not None and last_inbound > sent
            return message is None or (message.replied_at is None and not wrote)
        if message is None:
            return False
        button = condition["button"]
        return bool(
            self.session.scalar(
                select(InboundMessage.id)
                .where(
                    InboundMessage.reply_to_id == message.id,
                    (InboundMessage.button_payload == button) | (InboundMessage.button_text == button),
                )
                .limit(1)
            )
        )

    def _step(self, row, zone: str, earlier: dict) -> None:
        enrollment = row.Enrollment
        if enrollment.next_step >= len(self.steps):
            self._finish(enrollment, "completed", None)
            return
        step = self.steps[enrollment.next_step]
        wait = step.wait or {}
        base = (
            enrollment.enrolled_at
            if wait.get("after", "enrollment") == "enrollment"
            else enrollment.waiting_since
        )
        due = due_after(base, wait, zone)
        if due > self.now:  # not yet (a changed wait, or a claim that came early): wait on
            self._update(enrollment, next_due_at=due)
            return
        reason = None
        if step.condition:
            looked_at = self.steps[step.condition["step"] - 1]
            message = earlier.get((enrollment.run_id, looked_at.id, enrollment.contact_id))
            holds = self._holds(step.condition, message, row.last_inbound_at)
            reason = None if holds else "condition_not_met"
        self.messages[(enrollment.run_id, step.id, enrollment.contact_id)] = reason
        following = enrollment.next_step + 1
        if following >= len(self.steps):
            self._update(
                enrollment,
                next_step=following,
                waiting_since=self.now,
                next_due_at=None,
                status="completed",
                finished_at=self.now,
            )
            return
        nxt = self.steps[following].wait or {}
        nbase = enrollment.enrolled_at if nxt.get("after", "enrollment") == "enrollment" else self.now
        self._update(
            enrollment, next_step=following, waiting_since=self.now, next_due_at=due_after(nbase, nxt, zone)
        )

    def _fire_date(self, row, zone: str) -> None:
        enrollment = row.Enrollment
        value = (row.attributes or {}).get(self.campaign.drip["attribute"])
        if value != enrollment.basis:  # the date changed since it was scheduled
            _reschedule_date(
                self.session, self.campaign, enrollment.id, enrollment.basis, value, zone, self.now
            )
            return
        self.messages[(enrollment.run_id, self.steps[0].id, enrollment.contact_id)] = None
        day = parse_date_value(value)
        following = (
            date_fire(day, self.campaign.drip, zone, self.now)
            if self.campaign.drip["repeat"] == "yearly"
            else None
        )
        if following is None:
            self._update(
                enrollment, next_due_at=None, status="completed", finished_at=self.now, waiting_since=self.now
            )
        else:
            self._update(
                enrollment,
                next_due_at=following,
                waiting_since=self.now,
                run_id=_year_run(self.session, self.campaign, following, row.timezone),
            )

    def _finish(self, enrollment: Enrollment, status: str, reason: str | None) -> None:
        self._update(enrollment, status=status, exit_reason=reason, next_due_at=None, finished_at=self.now)

    def _update(self, enrollment: Enrollment, **values: Any) -> None:
        """Queue a move of this enrollment, written with the others of its shape (`write`)."""
        self.updates[tuple(sorted(values))].append(
            {"_id": enrollment.id, "_step": enrollment.next_step, "_entry": enrollment.entry}
            | {f"v_{k}": v for k, v in values.items()}
        )

    def write(self) -> None:
        """The queued moves, one executemany per set of columns moved. Each is conditional on
        the step and entry read: a second mover of the same row changes nothing."""
        table = Enrollment.__table__
        for columns, params in self.updates.items():
            statement = (
                update(table)
                .where(
                    table.c.id == bindparam("_id"),
                    table.c.status == "active",
                    table.c.next_step == bindparam("_step"),
                    table.c.entry == bindparam("_entry"),
                )
                .values({c: bindparam(f"v_{c}") for c in columns})
            )
            self.session.connection().execute(statement, params)
        self.updates.clear()

    def insert_messages(self) -> dict[int, list[int]]:
        """The due steps' ledger rows (the unique key makes a repeated move harmless), their
        counters, and the ids of those to send."""
        groups: dict[tuple[int, int, str | None], list[int]] = defaultdict(list)
        for (run_id, step_id, contact_id), reason in self.messages.items():
            groups[(run_id, step_id, reason)].append(contact_id)
        changes = []
        pending: dict[int, list[int]] = defaultdict(list)
        for (run_id, step_id, reason), contacts in groups.items():
            rows = [
                {
                    "campaign_id": self.campaign.id,
                    "run_id": run_id,
                    "step_id": step_id,
                    "contact_id": contact_id,
                    "purpose": "campaign",
                    "status": states.SKIPPED if reason else states.PENDING,
                    "skip_reason": reason,
                    "attempts": 0,
                    "created_at": self.now,
                }
                for contact_id in contacts
            ]
            # The rows a mover before this one inserted are its own to send (or, if it died
            # before it could, the quiet-run watchdog's): what goes is what this one inserted.
            added = insert_ignore_returning(
                self.session, Message, rows, ["run_id", "step_id", "contact_id"], "id"
            )
            metrics = {"targeted": len(added)}
            if reason:
                metrics |= {"skipped": len(added), f"skipped:{reason}": len(added)}
                self.skipped += added
            else:
                pending[run_id] += added
            changes.append((self.campaign.id, run_id, step_id, metrics))
        counters.apply(self.session, changes)
        return pending


# -- what marketers and contacts do meanwhile ---------------------------------------------------


def exit_contact(session: Session, contact_id: int, reason: str, now: datetime | None = None) -> int:
    """A contact replied or opted out: leave every drip that exits on it, now."""
    now = now or utcnow()
    rows = session.execute(
        select(Enrollment.id, Campaign.drip)
        .join(Campaign, Campaign.id == Enrollment.campaign_id)
        .where(Enrollment.contact_id == contact_id, Enrollment.status == "active", Campaign.kind == "drip")
    ).all()
    ids = [
        i
        for i, settings in rows
        if reason == "opted_out" or reason in (settings or {}).get("exit_on", DEFAULT_EXITS)
    ]
    if not ids:
        return 0
    return session.execute(
        update(Enrollment)
        .where(Enrollment.id.in_(ids), Enrollment.status == "active")
        .values(status="exited", exit_reason=reason, next_due_at=None, finished_at=now)
    ).rowcount


def end_enrollments(session: Session, campaign_id: int, reason: str, now: datetime | None = None) -> int:
    return session.execute(
        update(Enrollment)
        .where(Enrollment.campaign_id == campaign_id, Enrollment.status == "active")
        .values(status="exited", exit_reason=reason, next_due_at=None, finished_at=now or utcnow())
    ).rowcount


def shift_waits(session: Session, campaign_id: int, by: timedelta) -> int:
    """Resume after a pause: every waiting contact's due time moves on by the pause's length."""
    moved = 0
    last = 0
    while True:
        rows = session.execute(
            select(Enrollment.id, Enrollment.waiting_since, Enrollment.next_due_at)
            .where(Enrollment.campaign_id == campaign_id, Enrollment.status == "active", Enrollment.id > last)
            .order_by(Enrollment.id)
            .limit(SYNC_PAGE)
        ).all()
        if not rows:
            return moved
        last = rows[-1].id
        session.execute(
            update(Enrollment),
            [
                {
                    "id": i,
                    "waiting_since": since + by,
                    **({"next_due_at": due + by} if due is not None else {}),
                }
                for i, since, due in rows
            ],
        )
        moved += len(rows)


def list_enrollments(
    session: Session,
    campaign_id: int | None = None,
    contact_id: int | None = None,
    status: str | None = None,
    after: int = 0,
    limit: int = 50,
) -> list[Enrollment]:
    query = select(Enrollment).where(Enrollment.id > after).order_by(Enrollment.id).limit(limit)
    if campaign_id is not None:
        query = query.where(Enrollment.campaign_id == campaign_id)
    if contact_id is not None:
        query = query.where(Enrollment.contact_id == contact_id)
    if status is not None:
        query = query.where(Enrollment.status == status)
    return list(session.scalars(query))
