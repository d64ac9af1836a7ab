"""The account at a glance: messages per day across campaigns, opt-outs per day, the top
failure reasons, and how much of the sender's messaging limit the last 24 hours used."""

from __future__ import annotations

import bisect
from collections import Counter
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatman.contacts.models import Contact
from chatman.ledger import series
from chatman.ledger.models import Message
from chatman.reports import errors, timeseries
from chatman.timeutils import utcnow

WINDOW = timedelta(hours=24)


def reached_in_24h(session: Session, now: datetime) -> int:
    """Unique contacts messaged in the last 24 hours: what the messaging limit counts."""
    return session.scalar(
        select(func.count(func.distinct(Message.contact_id))).where(Message.submitted_at >= now - WINDOW)
    )


def overview(
    session: Session,
    timezone: str,
    preset: str = "last_30_days",
    sender: str | None = None,
    daily_limit: int | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    now = now or utcnow()
    zone = timeseries.zone_named(timezone)
    charts = timeseries.timeseries(session, None, timezone, preset, "day", now=now)
    start, end = timeseries.window(preset, zone, now)
    utc = ZoneInfo("UTC")
    cuts = timeseries.edges(start, end, "day", zone)
    opt_outs = [0] * len(cuts)
    for (at,) in session.execute(
        select(Contact.dnd_at).where(
            Contact.dnd.is_(True),
            Contact.dnd_reason == "opt_out",
            Contact.dnd_at >= start.astimezone(utc),
            Contact.dnd_at < end.astimezone(utc),
        )
    ):
        opt_outs[bisect.bisect_right(cuts, at) - 1] += 1
    codes: Counter[str] = Counter()
    for (_, _, metric), n in series.stored(session, None, start.astimezone(utc), end.astimezone(utc)).items():
        if metric.startswith(series.FAILED_CODE):
            codes[metric[len(series.FAILED_CODE) :]] += n
    reached = reached_in_24h(session, now)
    return {
        "timezone": timezone,
        "preset": preset,
        "days": charts["buckets"],
        "messages": charts["series"][0],
        "opt_outs": opt_outs,
        "top_failures": [
            {"code": code, "meaning": errors.meaning(code), "group": errors.group_of(code), "count": n}
            for code, n in sorted(codes.items(), key=lambda item: (-item[1], item[0]))[:10]
        ],
        "messaging_limit": [
            {
                "sender": sender,
                "contacts_last_24h": reached,
                "limit": daily_limit,
                "used": round(reached / daily_limit, 4) if daily_limit else None,
            }
        ],
    }
