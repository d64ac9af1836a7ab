"""The launch pre-flight: who would receive a campaign now, who would be skipped and why.

Counted in one SQL pass over the audience with the rules the send pipeline applies at send
time: the send policy's own (DND, the 24-hour window: messaging.policy) and the campaign's
(template approval, US marketing, the template's variables, as dispatch.compose checks them),
so the forecast and the report that follows agree. Errors stop a launch; warnings inform it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import case, exists, func, literal, or_, select
from sqlalchemy.orm import Session

from chatman.campaigns.audience import audience_condition
from chatman.campaigns.lifecycle import campaign_step, get_campaign
from chatman.contacts.models import Contact
from chatman.ledger.models import Message
from chatman.messaging import policy
from chatman.messaging.models import Template
from chatman.timeutils import utcnow


@dataclass
class Preflight:
    audience: int = 0  # contacts in the include segments and in no exclude segment
    eligible: int = 0  # of those, who would be sent the message now
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> contacts
    errors: list[str] = field(default_factory=list)  # the launch is refused
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "audience": self.audience,
            "eligible": self.eligible,
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
    recent = session.scalar(
        select(func.count(func.distinct(Message.contact_id))).where(Message.submitted_at >= since)
    )
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
