"""/campaigns: every kind of campaign, its counters, schedule and enrollments."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import marshmallow as ma
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.campaigns import drips, lifecycle, variants
from chatman.campaigns.models import CAMPAIGN_KINDS, CAMPAIGN_STATUSES, ENROLLING_KINDS, ENROLLMENT_STATUSES
from chatman.campaigns.preflight import Preflight
from chatman.extensions import redis_client, request_session, settings
from chatman.jobs import campaign_preflight, change_campaign, launch_campaign
from chatman.reports import funnel

blp = Blueprint("campaigns", __name__, url_prefix="/campaigns", description="Campaigns")
blp.before_request(require_token)
blp.before_request(check_request)


class RunSchema(ma.Schema):
    id = fields.Id()
    occurrence_at = ma.fields.AwareDateTime()
    status = fields.Text(
        metadata={
            "description": "freezing, sending, testing (an A/B test group waits for its winner), "
            "paused, completed, cancelled or skipped"
        }
    )
    completed_at = ma.fields.AwareDateTime(allow_none=True)
    skipped = fields.Text(
        allow_none=True,
        metadata={"description": "a skipped run's reason: missed (the clock was down) or paused"},
    )
    counters = ma.fields.Dict(metadata={"description": "metric -> count; per step in `steps`"})
    steps = ma.fields.Dict(metadata={"description": "step id -> {metric -> count}"})
    ab = ma.fields.Dict(
        allow_none=True,
        metadata={
            "description": "an A/B test's phase (testing, then rest), and once picked its winner, "
            "judge_by, decided_at and each variant's scores"
        },
    )


class PreflightSchema(ma.Schema):
    audience = fields.Integer(metadata={"description": "contacts in the segments"})
    eligible = fields.Integer(metadata={"description": "who would be sent the message now"})
    held = fields.Integer(
        metadata={"description": "of the eligible, who are outside the send window now (sent when it opens)"}
    )
    skipped = ma.fields.Dict(metadata={"description": "reason -> contacts"})
    errors = ma.fields.List(fields.Text(), metadata={"description": "why a launch is refused"})
    warnings = ma.fields.List(fields.Text())


class CampaignSchema(ma.Schema):
    id = fields.Id(dump_only=True)
    name = fields.Text(required=True, min=1, max=200)
    kind = fields.Text(
        load_default="one_time",
        validate=ma.validate.OneOf(CAMPAIGN_KINDS),
        metadata={
            "description": "one_time (a broadcast), triggered (by an event or an inbound trigger), "
            "recurring (on its recurrence), drip (steps over time per contact) or date (on a date "
            "attribute of each contact, e.g. a birthday)"
        },
    )
    trigger_event = fields.Text(
        allow_none=True,
        max=100,
        metadata={"description": "triggered: the event (POST /events) that sends it"},
    )
    status = fields.Text(dump_only=True)
    utm_campaign = fields.Text(allow_none=True, max=100)
    template_id = fields.Id(allow_none=True)
    body = fields.Text(allow_none=True, max=4096, metadata={"description": "free text (24-hour window only)"})
    variants = ma.fields.List(
        ma.fields.Dict(),
        allow_none=True,
        metadata={
            "description": "one-time and recurring: 2 to 5 A/B variants instead of template_id or body, "
            '[{"template_id": 3, "percent": 50}, {"body": "Hi {{name}}", "percent": 50}], each '
            "contact always getting the same one; shown with their label (A-E) and step_id"
        },
    )
    ab_test = ma.fields.Dict(
        allow_none=True,
        metadata={
            "description": 'one-time with variants: {"test_percent": 20, "judge_by": "read", '
            '"after_hours": 4}: the variants go to that share of the audience first; that many '
            "hours after the launch, the one with the best rate (delivered, read, replied or "
            "clicked: see the report's formulas) goes to the rest"
        },
    )
    include_segments = ma.fields.List(fields.Id(), load_default=list)
    exclude_segments = ma.fields.List(fields.Id(), load_default=list)
    owner = fields.Text(
        allow_none=True, max=254, metadata={"description": "e-mail of a user of this install"}
    )
    recurrence = ma.fields.Dict(
        allow_none=True,
        metadata={
            "description": 'recurring: {"every": "day|week|month|year", "interval": 1, "weekdays": '
            '["mon"], "at": "09:00"} or {"cron": "30 2 * * *"}, with "timezone", "start" '
            '(YYYY-MM-DD) and optionally "until" or "count"'
        },
    )
    next_occurrence_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True)
    send_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True)
    timezone = fields.Text(
        allow_none=True,
        max=64,
        metadata={
            "description": "drip, date and triggered: the zone of contacts without their own (IANA "
            "name); one-time: the schedule's; recurring: the recurrence's"
        },
    )
    send_window = ma.fields.Dict(
        allow_none=True,
        metadata={
            "description": 'when messages may arrive, on each contact\'s clock: {"from": "09:00", "to": '
            '"20:00", "weekdays": ["mon", "tue", "wed", "thu", "fri"]}; a message outside it is held '
            "until it opens. null: any time"
        },
    )
    steps = ma.fields.List(
        ma.fields.Dict(),
        allow_none=True,
        metadata={
            "description": 'drip: [{"body": "Welcome"}, {"wait": {"days": 1, "at": "10:00"}, '
            '"template_id": 3, "condition": {"if": "not_replied"}}]; wait units minutes, hours, '
            'days, weeks, "after": previous|enrollment; conditions not_delivered, not_read, '
            'not_replied, tapped (with "button"), on the previous step or "step": N. On a running '
            "drip give each existing step its id; new steps go at the end"
        },
    )
    drip = ma.fields.Dict(
        allow_none=True,
        metadata={
            "description": 'drip: {"exit_on": ["replied", "opted_out", "goal_reached", '
            '"left_segment"], "goal": {"attribute": "plan", "value": "paid"}, '
            '"reentry_after_days": 30}'
        },
    )
    date_field = ma.fields.Dict(
        allow_none=True,
        metadata={
            "description": 'date: {"attribute": "birthday", "offset_days": 0, "at": "10:00", '
            '"repeat": "yearly|once"}, at that time in each contact\'s timezone'
        },
    )
    completed_at = ma.fields.AwareDateTime(dump_only=True, allow_none=True)
    last_error = fields.Text(
        dump_only=True, allow_none=True, metadata={"description": "why a scheduled launch failed"}
    )
    counters = ma.fields.Dict(dump_only=True, metadata={"description": "metric -> count over all runs"})
    rates = ma.fields.Dict(
        dump_only=True,
        metadata={
            "description": "delivered (delivered / sent), read (read / delivered), replied (replied / "
            "delivered), clicked (clicked / delivered), as fractions; null when nothing was sent. "
            "The whole report: GET /campaigns/{id}/report"
        },
    )
    runs = ma.fields.List(ma.fields.Nested(RunSchema), dump_only=True)
    preflight = ma.fields.Nested(PreflightSchema, dump_only=True, metadata={"description": "on launch"})


class CampaignUpdateSchema(CampaignSchema):
    kind = fields.Text(dump_only=True)
    include_segments = ma.fields.List(fields.Id())
    exclude_segments = ma.fields.List(fields.Id())


class ScheduleSchema(ma.Schema):
    send_at = fields.WallTime(required=True, metadata={"description": "wall-clock time in timezone"})
    timezone = fields.Text(required=True, max=64, metadata={"description": "IANA name, e.g. Asia/Kolkata"})


def _dump(campaign, preflight: Preflight | None = None, summary: dict | None = None) -> dict:
    session = request_session()
    step = lifecycle.campaign_step(session, campaign.id)
    links = lifecycle.campaign_segments(session, campaign.id)
    summary = summary or funnel.summaries(session, [campaign.id])[campaign.id]
    runs = [
        {
            "id": run.id,
            "occurrence_at": run.occurrence_at,
            "status": run.status,
            "completed_at": run.completed_at,
            "skipped": (run.context or {}).get("skipped"),
            "ab": (run.context or {}).get("ab"),
            "counters": summary["runs"].get(run.id, {}),
            "steps": summary["steps"].get(run.id, {}),
        }
        for run in lifecycle.campaign_runs(session, campaign.id)
    ]
    return {
        "id": campaign.id,
        "name": campaign.name,
        "kind": campaign.kind,
        "trigger_event": campaign.trigger_event,
        "status": campaign.status,
        "owner": campaign.owner,
        "utm_campaign": campaign.utm_campaign,
        "template_id": step.template_id,
        "body": step.body,
        "variants": variants.as_dicts(variants.steps(session, step)),
        "ab_test": campaign.ab_test,
        "include_segments": links["include"],
        "exclude_segments": links["exclude"],
        "recurrence": campaign.recurrence,
        "steps": drips.step_dicts(session, campaign.id) if campaign.kind in ENROLLING_KINDS else None,
        "drip": campaign.drip if campaign.kind == "drip" else None,
        "date_field": campaign.drip if campaign.kind == "date" else None,
        "next_occurrence_at": campaign.next_occurrence_at,
        "send_at": campaign.send_at,
        "timezone": campaign.timezone,
        "send_window": campaign.send_window,
        "completed_at": campaign.completed_at,
        "last_error": campaign.last_error,
        "counters": summary["counters"],
        "rates": summary["rates"],
        "runs": runs,
        **({"preflight": preflight.as_dict()} if preflight else {}),
    }


def _preflight(campaign_id: int) -> Preflight:
    return campaign_preflight(request_session(), campaign_id, settings())


class CampaignListArgs(ma.Schema):
    status = fields.Text(validate=ma.validate.OneOf(CAMPAIGN_STATUSES))
    after = fields.Id(minimum=0, strict=False)
    limit = fields.Integer(load_default=50, minimum=1, maximum=200, strict=False)


class CampaignPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(CampaignSchema))
    next_after = fields.Id(allow_none=True, metadata={"description": "pass as `after` for the next page"})


@blp.route("")
class Campaigns(MethodView):
    @blp.arguments(CampaignListArgs, location="query")
    @blp.response(200, CampaignPageSchema)
    def get(self, args):
        """Campaigns, newest last, keyset-paginated; optionally only those with `status`."""
        campaigns = lifecycle.list_campaigns(
            request_session(), args.get("status"), args.get("after"), args["limit"]
        )
        next_after = campaigns[-1].id if len(campaigns) == args["limit"] else None
        summaries = funnel.summaries(request_session(), [c.id for c in campaigns])
        return {"items": [_dump(c, summary=summaries[c.id]) for c in campaigns], "next_after": next_after}

    @blp.arguments(
        CampaignSchema,
        example={"name": "November sale", "body": "Hi {{name}}, 20% off today", "include_segments": [1]},
    )
    @blp.response(201, CampaignSchema)
    def post(self, data):
        session = request_session()
        campaign = lifecycle.create_campaign(session, data)
        session.commit()
        return _dump(campaign)


@blp.route("/<int:campaign_id>")
class CampaignById(MethodView):
    @blp.response(200, CampaignSchema)
    def get(self, campaign_id: int):
        return _dump(lifecycle.get_campaign(request_session(), campaign_id))

    @blp.arguments(CampaignUpdateSchema(partial=True))
    @blp.response(200, CampaignSchema)
    def patch(self, data, campaign_id: int):
        session = request_session()
        campaign = lifecycle.update_campaign(session, campaign_id, data)
        session.commit()
        return _dump(campaign)


@blp.route("/<int:campaign_id>/launch")
class Launch(MethodView):
    @blp.response(202, CampaignSchema)
    def post(self, campaign_id: int):
        """Send now: freeze the audience and start sending in the background.

        The answer carries the pre-flight report (who will be sent the message, who is
        skipped and why, warnings); a report with errors refuses the launch (422).
        """
        session = request_session()
        report = launch_campaign(session, redis_client(), campaign_id, settings())
        return _dump(lifecycle.get_campaign(session, campaign_id), report)


@blp.route("/<int:campaign_id>/preflight")
class PreflightCheck(MethodView):
    @blp.response(200, PreflightSchema)
    def get(self, campaign_id: int):
        """What a launch now would do: eligible recipients, skipped ones by reason, warnings."""
        return _preflight(campaign_id).as_dict()


class OccurrenceSchema(ma.Schema):
    local = fields.Text(metadata={"description": "in the recurrence's timezone"})
    utc = ma.fields.AwareDateTime()


class UpcomingSchema(ma.Schema):
    timezone = fields.Text()
    occurrences = ma.fields.List(ma.fields.Nested(OccurrenceSchema))


class UpcomingArgs(ma.Schema):
    limit = fields.Integer(load_default=10, minimum=1, maximum=100, strict=False)


@blp.route("/<int:campaign_id>/schedule")
class Schedule(MethodView):
    @blp.arguments(UpcomingArgs, location="query")
    @blp.response(200, UpcomingSchema)
    def get(self, args, campaign_id: int):
        """A recurring campaign's next occurrences, in its timezone and in UTC."""
        zone, times = lifecycle.upcoming(request_session(), campaign_id, args["limit"])
        return {
            "timezone": zone,
            "occurrences": [{"local": t.astimezone(ZoneInfo(zone)).isoformat(), "utc": t} for t in times],
        }

    @blp.arguments(ScheduleSchema, example={"send_at": "2031-01-15T09:30:00", "timezone": "Asia/Kolkata"})
    @blp.response(200, CampaignSchema)
    def post(self, data, campaign_id: int):
        """Send at a wall-clock time in a named timezone (stored in UTC)."""
        session = request_session()
        campaign = lifecycle.schedule(session, campaign_id, data["send_at"], data["timezone"])
        session.commit()
        return _dump(campaign)


class ResumeSchema(ma.Schema):
    catch_up = ma.fields.Boolean(
        load_default=False,
        metadata={
            "description": "recurring and drip: do now what fell due during the pause (a recurring "
            "campaign's latest occurrence if it is younger than RECURRING_CATCH_UP_S, the older "
            "ones recorded as missed); by default they are skipped (paused) and the waits move on"
        },
    )


def _action(action: str):
    def post(self, *body: dict, campaign_id: int):
        catch_up = bool(body and body[0].get("catch_up"))
        return _dump(change_campaign(request_session(), redis_client(), campaign_id, action, catch_up))

    post.__doc__ = f"{action.capitalize()} the campaign."
    view = blp.response(200, CampaignSchema)(post)
    if action == "resume":
        view = blp.arguments(ResumeSchema, required=False, example={"catch_up": False})(view)
    return type(action.capitalize(), (MethodView,), {"post": view})


for _name in ("pause", "resume", "cancel"):
    blp.route(f"/<int:campaign_id>/{_name}")(_action(_name))


class EnrollmentSchema(ma.Schema):
    id = fields.Id()
    campaign_id = fields.Id()
    contact_id = fields.Id()
    run_id = fields.Id()
    entry = fields.Integer(metadata={"description": "1, or more for a contact who entered again"})
    source = fields.Text(metadata={"description": "segment, trigger, event, api or date"})
    status = fields.Text(metadata={"description": "active, completed or exited"})
    next_step = fields.Integer(metadata={"description": "the step it waits for (1 is the first)"})
    next_due_at = ma.fields.AwareDateTime(allow_none=True)
    enrolled_at = ma.fields.AwareDateTime()
    finished_at = ma.fields.AwareDateTime(allow_none=True)
    exit_reason = fields.Text(
        allow_none=True,
        metadata={
            "description": "replied, opted_out, goal_reached, left_segment, campaign_cancelled or no_date"
        },
    )


class EnrollmentListArgs(ma.Schema):
    status = fields.Text(validate=ma.validate.OneOf(ENROLLMENT_STATUSES))
    after = fields.Id(minimum=0, strict=False, load_default=0)
    limit = fields.Integer(load_default=50, minimum=1, maximum=500, strict=False)


class EnrollmentPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(EnrollmentSchema))
    next_after = fields.Id(allow_none=True, metadata={"description": "pass as `after` for the next page"})


class EnrollSchema(ma.Schema):
    contact_ids = ma.fields.List(fields.Id(), required=True, validate=ma.validate.Length(min=1, max=1000))


class EnrolledSchema(ma.Schema):
    enrolled = ma.fields.List(fields.Id(), metadata={"description": "contacts who entered now"})


def enrollment_page(args: dict, **where) -> dict:
    rows = drips.list_enrollments(
        request_session(), status=args.get("status"), after=args["after"], limit=args["limit"], **where
    )
    items = [
        {
            "id": e.id,
            "campaign_id": e.campaign_id,
            "contact_id": e.contact_id,
            "run_id": e.run_id,
            "entry": e.entry,
            "source": e.source,
            "status": e.status,
            "next_step": e.next_step + 1,
            "next_due_at": e.next_due_at,
            "enrolled_at": e.enrolled_at,
            "finished_at": e.finished_at,
            "exit_reason": e.exit_reason,
        }
        for e in rows
    ]
    return {"items": items, "next_after": rows[-1].id if len(rows) == args["limit"] else None}


@blp.route("/<int:campaign_id>/enrollments")
class Enrollments(MethodView):
    @blp.arguments(EnrollmentListArgs, location="query")
    @blp.response(200, EnrollmentPageSchema)
    def get(self, args, campaign_id: int):
        """A drip's or date campaign's contacts and where each one is."""
        lifecycle.get_campaign(request_session(), campaign_id)
        return enrollment_page(args, campaign_id=campaign_id)

    @blp.arguments(EnrollSchema, example={"contact_ids": [1, 2]})
    @blp.response(200, EnrolledSchema)
    def post(self, data, campaign_id: int):
        """Enroll contacts in a running drip (one already in is left where it is)."""
        session = request_session()
        enrolled = lifecycle.enroll_contacts(session, campaign_id, data["contact_ids"])
        session.commit()
        return {"enrolled": enrolled}
