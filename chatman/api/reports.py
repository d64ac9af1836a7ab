"""Reports: a campaign's funnel, its recipients behind any counter, a CSV export, a segment
from an outcome, time series in the viewer's timezone, and the account overview."""

from __future__ import annotations

import marshmallow as ma
from flask import Response, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from chatman.api import fields
from chatman.api.auth import require_token
from chatman.api.checks import check_request
from chatman.campaigns import drips, lifecycle, variants
from chatman.extensions import request_session, settings
from chatman.reports import funnel, overview, recipients, timeseries

blp = Blueprint("reports", __name__, url_prefix="", description="Reports")
blp.before_request(require_token)
blp.before_request(check_request)

OUTCOME = f"repeat for several (all must hold); {recipients.OUTCOMES_HELP}"


class ReportSchema(ma.Schema):
    campaign_id = fields.Id()
    formulas = ma.fields.Dict(metadata={"description": "rate -> how it is computed"})
    counts = ma.fields.Dict(metadata={"description": "targeted, skipped, held, submitted, sent, ..."})
    rates = ma.fields.Dict(metadata={"description": "fractions (null when the denominator is 0)"})
    skipped = ma.fields.Dict(metadata={"description": "reason -> recipients"})
    failures = ma.fields.Dict(
        metadata={
            "description": "limited_by_meta (63049, 131049), outside_window (63016, 131047), other, "
            "and codes: [{code, meaning, group, count}]"
        }
    )
    taps = ma.fields.Dict(metadata={"description": "button payload -> recipients who tapped it"})
    links = ma.fields.List(ma.fields.Dict(), metadata={"description": "[{link_id, url, clicked}]"})
    runs = ma.fields.List(
        ma.fields.Dict(), metadata={"description": "per run (occurrence): the same, with its steps"}
    )
    steps = ma.fields.List(ma.fields.Dict(), metadata={"description": "per step over all runs"})
    variants = ma.fields.List(
        ma.fields.Dict(),
        metadata={
            "description": "A/B variants side by side: label, step_id, percent, the rate they are "
            "judged by (judged_by, rate) and each one's funnel; [] without variants"
        },
    )


def _step_positions(session, campaign_id: int) -> dict[int, int]:
    return {s.id: s.position + 1 for s in drips.steps_of(session, campaign_id)}


def full_report(session, campaign_id: int) -> dict:
    """`funnel.campaign_report` with each run's occurrence and status, steps numbered, and the
    A/B variants side by side: what the API and the admin's report page show."""
    campaign = lifecycle.get_campaign(session, campaign_id)
    report = funnel.campaign_report(session, campaign_id)
    positions = _step_positions(session, campaign_id)

    def steps(by_step: dict) -> list[dict]:
        return [{"step_id": s, "position": positions.get(s), **f} for s, f in by_step.items()]

    runs = []
    for run in lifecycle.campaign_runs(session, campaign_id):
        figures = report["runs"].get(run.id)
        if figures is None:
            figures = {**funnel.funnel({}), "steps": {}}
        runs.append(
            {
                "run_id": run.id,
                "occurrence_at": run.occurrence_at.isoformat(),
                "status": run.status,
                "ab": (run.context or {}).get("ab"),
                **figures,
                "steps": steps(figures["steps"]),
            }
        )
    main = lifecycle.campaign_step(session, campaign_id)
    judge_by = (campaign.ab_test or {}).get("judge_by")
    compared = [
        {
            "label": step.label,
            "step_id": step.id,
            "percent": step.percent,
            "judged_by": judge_by,
            "rate": report["steps"].get(step.id, funnel.funnel({}))["rates"][judge_by] if judge_by else None,
            **report["steps"].get(step.id, funnel.funnel({})),
        }
        for step in variants.steps(session, main)
    ]
    return {**report, "runs": runs, "steps": steps(report["steps"]), "variants": compared}


@blp.route("/campaigns/<int:campaign_id>/report")
class CampaignReport(MethodView):
    @blp.response(200, ReportSchema)
    def get(self, campaign_id: int):
        """The campaign's funnel: counts, rates (formulas given), skipped by reason, failures by
        code with their meaning, button taps, link clicks, opt-outs; per run and per step."""
        return full_report(request_session(), campaign_id)


class ScopeArgs(ma.Schema):
    outcome = ma.fields.List(
        fields.Text(max=100), load_default=lambda: ["targeted"], metadata={"description": OUTCOME}
    )
    not_ = ma.fields.List(
        fields.Text(max=100),
        data_key="not",
        load_default=list,
        metadata={"description": "outcomes they must not have, e.g. outcome=read&not=replied"},
    )
    run_id = fields.Id(strict=False)
    step_id = fields.Id(strict=False)


class RecipientArgs(ScopeArgs):
    after = fields.Id(minimum=0, strict=False, load_default=0)
    limit = fields.Integer(load_default=50, minimum=1, maximum=500, strict=False)


class RecipientSchema(ma.Schema):
    message_id = fields.Id()
    contact_id = fields.Id(allow_none=True, metadata={"description": "null once the contact was erased"})
    phone = fields.Text(allow_none=True)
    name = fields.Text(allow_none=True)
    run_id = fields.Id()
    step_id = fields.Id()
    status = fields.Text()
    skip_reason = fields.Text(allow_none=True)
    error_code = fields.Text(allow_none=True)
    error_meaning = fields.Text(allow_none=True)
    submitted_at = ma.fields.AwareDateTime(allow_none=True)
    sent_at = ma.fields.AwareDateTime(allow_none=True)
    delivered_at = ma.fields.AwareDateTime(allow_none=True)
    read_at = ma.fields.AwareDateTime(allow_none=True)
    failed_at = ma.fields.AwareDateTime(allow_none=True)
    replied_at = ma.fields.AwareDateTime(allow_none=True)
    clicked_at = ma.fields.AwareDateTime(allow_none=True)
    reply = fields.Text(allow_none=True, metadata={"description": "the first reply's text"})
    button = fields.Text(allow_none=True, metadata={"description": "the first reply's button payload"})


class RecipientPageSchema(ma.Schema):
    items = ma.fields.List(ma.fields.Nested(RecipientSchema))
    next_after = fields.Id(allow_none=True, metadata={"description": "pass as `after` for the next page"})


def _scope(campaign_id: int, args: dict) -> recipients.Scope:
    lifecycle.get_campaign(request_session(), campaign_id)
    return recipients.Scope(campaign_id, args.get("run_id"), args.get("step_id"))


@blp.route("/campaigns/<int:campaign_id>/recipients")
class Recipients(MethodView):
    @blp.arguments(RecipientArgs, location="query")
    @blp.response(200, RecipientPageSchema)
    def get(self, args, campaign_id: int):
        """The recipients behind a counter (`outcome=read&not=replied`), in message order,
        keyset-paginated: as many as the counter says."""
        items, next_after = recipients.drill_down(
            request_session(),
            _scope(campaign_id, args),
            args["outcome"],
            args["not_"],
            args["after"],
            args["limit"],
        )
        return {"items": items, "next_after": next_after}


def csv_download(session, campaign_id: int, scope, args) -> Response:
    """The export as a streamed download (the API's and the admin's)."""
    lines = recipients.export_csv(session, scope, args["outcome"], args["not_"])

    def stream():
        yield from lines
        session.rollback()  # the last page read: the transaction ends with the download

    return Response(
        stream_with_context(stream()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="campaign-{campaign_id}.csv"'},
    )


@blp.route("/campaigns/<int:campaign_id>/export.csv")
class Export(MethodView):
    @blp.arguments(ScopeArgs, location="query")
    @blp.response(200, content_type="text/csv", description="the per-recipient ledger as CSV")
    def get(self, args, campaign_id: int):
        """The per-recipient ledger (status, times, error and its meaning, first reply) as CSV,
        streamed: any size of campaign in flat memory. Cells that a spreadsheet would run as
        formulas are prefixed with a quote."""
        return csv_download(request_session(), campaign_id, _scope(campaign_id, args), args)


class RetargetSchema(ScopeArgs):
    name = fields.Text(required=True, min=1, max=200, metadata={"description": "the new segment's name"})
    description = fields.Text(allow_none=True, max=2000)
    outcome = ma.fields.List(
        fields.Text(max=100),
        required=True,
        validate=ma.validate.Length(min=1, max=10),
        metadata={"description": OUTCOME},
    )


class RetargetedSchema(ma.Schema):
    segment_id = fields.Id()
    members = fields.Integer()


@blp.route("/campaigns/<int:campaign_id>/retarget")
class Retarget(MethodView):
    @blp.arguments(
        RetargetSchema,
        example={"name": "Read the sale, did not reply", "outcome": ["read"], "not": ["replied"]},
    )
    @blp.response(201, RetargetedSchema)
    def post(self, data, campaign_id: int):
        """A new static segment of the contacts with an outcome ("read but not replied",
        "failed:63016", "tapped:YES", "clicked"), filled in one statement."""
        session = request_session()
        segment_id, members = recipients.retarget(
            session,
            _scope(campaign_id, data),
            data["name"],
            data["outcome"],
            data["not_"],
            data.get("description"),
        )
        session.commit()
        return {"segment_id": segment_id, "members": members}


class SeriesArgs(ma.Schema):
    campaign_id = ma.fields.List(
        fields.Id(strict=False),
        validate=ma.validate.Length(max=20),
        load_default=list,
        metadata={"description": "repeat to compare campaigns; none: all campaigns summed"},
    )
    timezone = fields.Text(load_default="UTC", max=64, metadata={"description": "the viewer's (IANA name)"})
    preset = fields.Text(load_default="last_7_days", validate=ma.validate.OneOf(timeseries.PRESETS))
    granularity = fields.Text(
        validate=ma.validate.OneOf(timeseries.GRANULARITIES),
        metadata={"description": "default: hour up to 2 days, day up to 93, month beyond"},
    )
    start = ma.fields.Date(metadata={"description": "custom: the first day (YYYY-MM-DD)"})
    end = ma.fields.Date(metadata={"description": "custom: the last day, included"})


class SeriesSchema(ma.Schema):
    timezone = fields.Text()
    preset = fields.Text()
    granularity = fields.Text()
    start = fields.Text()
    end = fields.Text()
    buckets = ma.fields.List(fields.Text(), metadata={"description": "each bucket's start, in the timezone"})
    series = ma.fields.List(
        ma.fields.Dict(),
        metadata={
            "description": "per campaign: {campaign_id, sent: [...], delivered, read, failed, "
            "replied, clicked}"
        },
    )


@blp.route("/reports/timeseries")
class TimeSeries(MethodView):
    @blp.arguments(SeriesArgs, location="query")
    @blp.response(200, SeriesSchema)
    def get(self, args):
        """Sent, delivered, read, failed, replied and clicked per half-hour, hour, day or month of
        the viewer's timezone, over a preset or a custom range; several campaigns side by side.
        Each counts when it happened (a delivery callback's time), not the campaign's state."""
        session = request_session()
        for campaign_id in args["campaign_id"]:
            lifecycle.get_campaign(session, campaign_id)
        return timeseries.timeseries(
            session,
            list(dict.fromkeys(args["campaign_id"])) or None,
            args["timezone"],
            args["preset"],
            args.get("granularity"),
            args.get("start"),
            args.get("end"),
        )


class OverviewArgs(ma.Schema):
    timezone = fields.Text(load_default="UTC", max=64)
    preset = fields.Text(load_default="last_30_days", validate=ma.validate.OneOf(timeseries.PRESETS[:-1]))


class OverviewSchema(ma.Schema):
    timezone = fields.Text()
    preset = fields.Text()
    days = ma.fields.List(fields.Text(), metadata={"description": "each day's start, in the timezone"})
    messages = ma.fields.Dict(
        metadata={"description": "sent, delivered, read, failed, replied, clicked per day"}
    )
    opt_outs = ma.fields.List(fields.Integer(), metadata={"description": "contacts who opted out, per day"})
    top_failures = ma.fields.List(
        ma.fields.Dict(), metadata={"description": "[{code, meaning, group, count}]"}
    )
    messaging_limit = ma.fields.List(
        ma.fields.Dict(),
        metadata={"description": "per sender: {sender, contacts_last_24h, limit, used (a fraction)}"},
    )


@blp.route("/reports/overview")
class Overview(MethodView):
    @blp.arguments(OverviewArgs, location="query")
    @blp.response(200, OverviewSchema)
    def get(self, args):
        """Messages per day across campaigns, opt-outs per day, the top failure reasons, and the
        sender's messaging-limit use over the last 24 hours."""
        config = settings()
        return overview.overview(
            request_session(),
            args["timezone"],
            args["preset"],
            sender=config.twilio_whatsapp_from or config.twilio_messaging_service_sid or "simulator",
            daily_limit=config.sender_daily_limit,
        )
