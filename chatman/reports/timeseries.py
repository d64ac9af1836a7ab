"""Time series of what happened to campaign messages (sent, delivered, read, replied, clicked,
failed), in half-hours, hours, days or months of the viewer's timezone, over a preset or a
custom range; one campaign, several compared, or all.

Read from the 15-minute rollups (`ledger.series`), which add up exactly to the buckets of any
zone; the edges are cut here, in Python, so both databases give the same buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.relativedelta import relativedelta
from sqlalchemy.orm import Session

from chatman.errors import Invalid
from chatman.ledger import series
from chatman.timeutils import utcnow

PRESETS = ("today", "yesterday", "last_7_days", "last_30_days", "this_month", "last_month", "custom")
GRANULARITIES = ("half_hour", "hour", "day", "month")
METRICS = series.METRICS
# A custom range covers at most this much (the rollups hold every day; a page should not).
MAX_DAYS = 731
MAX_BUCKETS = 5000


def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise Invalid(
            "timezone", f"unknown timezone {name!r}: give an IANA name such as Asia/Kolkata"
        ) from None


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def window(
    preset: str, zone: ZoneInfo, now: datetime, start: date | None = None, end: date | None = None
) -> tuple[datetime, datetime]:
    """[start, end) of a preset in `zone`, as aware datetimes in that zone. Whole local days:
    `today` runs to tonight's midnight; `last_7_days` is today and the 6 days before it; a
    custom range runs from `start` to the end of `end`."""
    today = now.astimezone(zone).date()
    first = today.replace(day=1)
    days = {
        "today": (today, today),
        "yesterday": (today - timedelta(days=1), today - timedelta(days=1)),
        "last_7_days": (today - timedelta(days=6), today),
        "last_30_days": (today - timedelta(days=29), today),
        "this_month": (first, first + relativedelta(months=1) - timedelta(days=1)),
        "last_month": (first - relativedelta(months=1), first - timedelta(days=1)),
    }
    if preset == "custom":
        if start is None or end is None:
            raise Invalid("start", "a custom range needs start and end dates (YYYY-MM-DD)")
        if end < start:
            raise Invalid("end", "the end date is before the start date")
        if (end - start).days >= MAX_DAYS:
            raise Invalid("end", f"a range covers at most {MAX_DAYS} days")
        days["custom"] = (start, end)
    if preset not in days:
        raise Invalid("preset", f"unknown preset {preset!r}; one of {', '.join(PRESETS)}")
    first_day, last_day = days[preset]
    return _midnight(first_day, zone), _midnight(last_day + timedelta(days=1), zone)


def default_granularity(start: datetime, end: datetime) -> str:
    """Hours for a day or two, days up to three months, months beyond (listmonk's choice)."""
    span = end - start
    if span <= timedelta(days=2, hours=1):
        return "hour"
    return "day" if span <= timedelta(days=93) else "month"


def edges(start: datetime, end: datetime, granularity: str, zone: ZoneInfo) -> list[datetime]:
    """Bucket starts in UTC from `start` (a local midnight) until `end`. Days and months step
    on the local calendar (a DST day is 23 or 25 hours; months start on the 1st); hours and
    half-hours step in real time from a local midnight, which keeps them on the local clock's
    edges."""
    out: list[datetime] = []
    if granularity in ("half_hour", "hour"):
        step = timedelta(minutes=30 if granularity == "half_hour" else 60)
        at, stop = start.astimezone(UTC), end.astimezone(UTC)
        while at < stop:
            out.append(at)
            at += step
    elif granularity in ("day", "month"):
        day, stop_day = start.date(), end.date()
        while day < stop_day:
            out.append(_midnight(day, zone).astimezone(UTC))
            # Calendar months: a range that starts mid-month has a short first bucket.
            day = (
                day + timedelta(days=1)
                if granularity == "day"
                else day.replace(day=1) + relativedelta(months=1)
            )
    else:
        raise Invalid(
            "granularity", f"unknown granularity {granularity!r}; one of {', '.join(GRANULARITIES)}"
        )
    if len(out) > MAX_BUCKETS:
        raise Invalid(
            "granularity", f"that is {len(out)} buckets; choose a coarser granularity or a shorter range"
        )
    return out


def timeseries(
    session: Session,
    campaign_ids: Sequence[int] | None,
    timezone: str,
    preset: str = "last_7_days",
    granularity: str | None = None,
    start: date | None = None,
    end: date | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Counts per bucket of each metric, per campaign (None: all campaigns, summed)."""
    zone = zone_named(timezone)
    begin, finish = window(preset, zone, now or utcnow(), start, end)
    granularity = granularity or default_granularity(begin, finish)
    cuts = edges(begin, finish, granularity, zone)
    keys = list(campaign_ids) if campaign_ids is not None else None
    rows = series.stored(session, keys, begin.astimezone(UTC), finish.astimezone(UTC), METRICS)
    names = keys if keys is not None else ["all"]
    values = {name: {m: [0] * len(cuts) for m in METRICS} for name in names}
    # Each 15-minute bucket of the range and the viewer's bucket it falls in, looked up by hash.
    index_of, at, n = {}, cuts[0] if cuts else finish, 0
    while at < finish:
        while n + 1 < len(cuts) and cuts[n + 1] <= at:
            n += 1
        index_of[at] = n
        at += series.BUCKET
    for (campaign_id, bucket_at, metric), count in rows.items():
        index = index_of.get(bucket_at)
        if index is not None:
            values[campaign_id if keys is not None else "all"][metric][index] += count
    return {
        "timezone": timezone,
        "preset": preset,
        "granularity": granularity,
        "start": begin.isoformat(),
        "end": finish.isoformat(),
        "buckets": [cut.astimezone(zone).isoformat() for cut in cuts],
        "series": [{"campaign_id": name if keys is not None else None, **values[name]} for name in names],
    }
