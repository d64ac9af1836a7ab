"""The launch pre-flight: who would receive a campaign now, who would be skipped and why.

Counted in one SQL pass over the audience with the rules the send pipeline applies at send
time: the send policy's own (DND, the 24-hour window: messaging.policy) and the campaign's
(template approval, US marketing, the template's variables, as dispatch.compose checks them),
so the forecast and the report that follows agree. Errors stop a launch; warnings inform it,
among them how many eligible contacts the send window holds now; contacts already at the
marketing cap are skipped as `capped` (both counted zone by zone, on the contact's clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import case, exists, func, literal, or_, select
from sqlalchemy.orm import Session

from chatman.campaigns.audience import audience_condition
from chatman.campaigns.lifecycle import campaign_step, get_campaign
from chatman.contacts.models import Contact
from chatman.ledger import states
from chatman.ledger.models import Message
from chatman.messaging import policy, send_window
from chatman.messaging.models import Template
from chatman.reports import overview
from chatman.timeutils import utcnow, zone_of


@dataclass
class Preflight:
    audience: int = 0  # contacts in the include segments and in no exclude segment
    eligible: int = 0  # of those, who would be sent the message now
    held: int = 0  # of the eligible, who are outside the send window now: sent when it opens
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> contacts
    errors: list[str] = field(default_factory=list)  # the launch is refused
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "audience": self.audience,
            "eligible": self.eligible,
            "held": self.held,
            "skipped": self.skipped,
            "errors": self.errors,
            "warnings": self.warnings,
        }


def preflight(
    session: Session,
    campaign_id: int,
    daily_limit: int | None,
    skip_us_marketing: bool,
    now: datetime | None = None,
    cap: policy.Cap | None = None,
) -> Preflight:
    now = now or utcnow()
    campaign = get_campaign(session, campaign_id)
    step = campaign_step(session, campaign_id)
    template = session.get(Template, step.template_id) if step.template_id else None
    report = Preflight()
    if campaign.kind == "triggered":  # no audience to count: it sends to whoever triggers it
        if template is not None and template.status != "approved":
            report.errors.append(f"template {template.name!r} is {template.status}, not approved")
        return report

    reasons = policy.rules(now, free_text=template is None)
    if template is not None:
        if template.status != "approved":
            report.errors.append(
                f"template {template.name!r} is {template.status}, not approved: only an approved "
                "template can start a conversation"
            )
            reasons.append((literal(True), "template_not_approved"))
        if skip_us_marketing and template.category == "marketing":
            reasons.append((Contact.phone.startswith("+1"), "us_marketing"))
        missing = [_missing(source) for source in (template.variables or {}).values()]
        if missing:
            reasons.append((or_(*missing), "missing_variable"))
        if template.category == "authentication":
            report.warnings.append(
                "an authentication template is meant for one person's one-time code, not a broadcast"
            )
    reason = case(*reasons, else_=literal(None))
    for why, count in session.execute(
        select(reason, func.count()).where(audience_condition(session, campaign_id)).group_by(reason)
    ):
        report.audience += count
        if why is None:
            report.eligible += count
        else:
            report.skipped[why] = count
    window = send_window.from_stored(campaign.send_window)
    cap = cap if template is None or template.category == "marketing" else None  # utility: exempt
    if report.eligible and (window is not None or cap is not None):
        _by_zone(session, report, campaign_id, reasons, window, cap, campaign.timezone, now)
    if report.eligible == 0:
        report.warnings.append("no contact in the audience would receive this campaign")
    if daily_limit is not None and report.eligible:
        reached = _reached_in_24h(session, campaign_id, reasons, now)
        if reached > daily_limit:
            report.warnings.append(
                f"{reached:,} different contacts would be messaged within 24 hours, over the sender's "
                f"limit of {daily_limit:,} (SENDER_DAILY_LIMIT): WhatsApp refuses the rest with error "
                "63018 until the window rolls on"
            )
    return report


def _by_zone(
    session: Session,
    report: Preflight,
    campaign_id: int,
    reasons,
    window: send_window.SendWindow | None,
    cap: policy.Cap | None,
    campaign_zone: str | None,
    now: datetime,
) -> None:
    """The rules read on the contact's clock, zone by zone (a few zones, not a contact at a
    time): eligible contacts already at the marketing cap are skipped as `capped`; of the
    rest, those outside the send window now are `held`."""
    zone = func.coalesce(Contact.timezone, literal(zone_of(None, campaign_zone)))
    eligible = [audience_condition(session, campaign_id), *(~condition for condition, _ in reasons)]
    opens: dict[str, datetime] = {}
    capped = 0
    for name, count in session.execute(select(zone, func.count()).where(*eligible).group_by(zone)).all():
        if cap is not None:
            handed = (
                select(func.count())
                .where(
                    Message.contact_id == Contact.id,
                    Message.marketing.is_(True),
                    Message.handed_at >= cap.since(now, name),
                    Message.status != states.FAILED,
                )
                .scalar_subquery()
            )
            over = session.scalar(select(func.count()).where(*eligible, zone == name, handed >= cap.limit))
            capped, count = capped + over, count - over
        at = window.opens_at(now, name) if window is not None else None
        if at is not None and count:
            report.held += count
            opens[name] = at
    if capped:
        report.skipped["capped"] = capped
        report.eligible -= capped
    if report.held:
        first = min(opens, key=opens.get)
        local = opens[first].astimezone(ZoneInfo(first))
        report.warnings.append(
            f"{report.held:,} of the {report.eligible:,} are outside the send window now; their messages "
            f"wait until it opens on their clock (the first at {local:%a %H:%M} in {first})"
        )


def _missing(source: dict):
    """SQL: the contact has no value for this template variable (as rendering.resolve sees it)."""
    ((kind, key),) = source.items()
    if kind in ("value", "event"):  # an event's properties are known only when it arrives
        return literal(False)
    column = getattr(Contact, key) if kind == "field" else Contact.attributes[key].as_string()
    return or_(column.is_(None), column == "")


def _reached_in_24h(session: Session, campaign_id: int, reasons, now: datetime) -> int:
    """Contacts messaged in the last 24 hours, plus the eligible ones among the audience who
    were not: the sender's messaging limit counts unique contacts per rolling 24 hours."""
    since = now - policy.WINDOW
    recent = overview.reached_in_24h(session, now)
    fresh = session.scalar(
        select(func.count())
        .select_from(Contact)
        .where(
            audience_condition(session, campaign_id),
            *(~condition for condition, _ in reasons),
            ~exists().where(Message.contact_id == Contact.id, Message.submitted_at >= since),
        )
    )
    return recent + fresh
