"""Time-series counts per (campaign, 15-minute bucket, metric), kept in step with the ledger.

Each message timestamp a report charts (sent_at, delivered_at, read_at, failed_at,
replied_at, clicked_at) is set once; the change that sets it inserts +1 for its bucket in
the same transaction, so the series always equals a recount from the message rows
(`recount`). Rows are inserted and squashed, never updated, as `counters` does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.orm import Session

from chatman.dialects import try_advisory_lock
from chatman.ledger.models import CampaignSeries, Message

BUCKET = timedelta(minutes=15)
# metric -> the message column that times it
TIMED = {
    "sent": "sent_at",
    "delivered": "delivered_at",
    "read": "read_at",
    "failed": "failed_at",
    "replied": "replied_at",
    "clicked": "clicked_at",
}
METRICS = tuple(TIMED)
# Failures are also counted per error code, as "failed:<code>" ("failed:unknown" without one).
FAILED_CODE = "failed:"
Key = tuple[int, datetime, str]  # campaign_id, bucket_at, metric


def bucket_of(at: datetime) -> datetime:
    """The start of the 15-minute UTC bucket holding `at`."""
    return at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)


def failed_code(code: str | None) -> str:
    return f"{FAILED_CODE}{code or 'unknown'}"


def add(session: Session, events: Iterable[tuple[int | None, str, datetime]]) -> None:
    """Count events given as (campaign_id, metric, when); conversation messages (no campaign)
    are charted by no campaign."""
    total: Counter[Key] = Counter()
    for campaign_id, metric, at in events:
        if campaign_id is not None:
            total[(campaign_id, bucket_of(at), metric)] += 1
    _insert(session, total, squashed=False)


def add_failures(session: Session, failures: Iterable[tuple[int | None, str | None, datetime]]) -> None:
    """Count failures given as (campaign_id, error code, when), in all and per code."""
    events = []
    for campaign_id, code, at in failures:
        events += [(campaign_id, "failed", at), (campaign_id, failed_code(code), at)]
    add(session, events)


def stored(
    session: Session,
    campaign_ids: Iterable[int] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    metrics: Iterable[str] | None = None,
) -> dict[Key, int]:
    """Every count (the sum of its rows), of some campaigns or all, with buckets in [start, end),
    of some metrics or all."""
    columns = (CampaignSeries.campaign_id, CampaignSeries.bucket_at, CampaignSeries.metric)
    query = select(*columns, func.sum(CampaignSeries.value)).group_by(*columns)
    if campaign_ids is not None:
        query = query.where(CampaignSeries.campaign_id.in_(list(campaign_ids)))
    if metrics is not None:
        query = query.where(CampaignSeries.metric.in_(list(metrics)))
    if start is not None:
        query = query.where(CampaignSeries.bucket_at >= start)
    if end is not None:
        query = query.where(CampaignSeries.bucket_at < end)
    return {(c, b, m): int(v) for c, b, m, v in session.execute(query) if v}


def recount(session: Session, campaign_id: int | None = None) -> dict[Key, int]:
    """The series computed afresh from the message rows (streamed, bucketed here so that both
    databases cut the same edges)."""
    counts: Counter[Key] = Counter()
    for metric, column in TIMED.items():
        at = getattr(Message, column)
        query = select(Message.campaign_id, at).where(Message.campaign_id.is_not(None), at.is_not(None))
        if campaign_id is not None:
            query = query.where(Message.campaign_id == campaign_id)
        if metric == "failed":
            query = query.add_columns(Message.error_code)
        for c, when, *code in session.execute(query.execution_options(yield_per=10_000)):
            counts[(c, bucket_of(when), metric)] += 1
            if code:
                counts[(c, bucket_of(when), failed_code(code[0]))] += 1
    return dict(counts)


def differences(
    session: Session, campaign_id: int | None = None, want: dict[Key, int] | None = None
) -> list[tuple[Key, int, int]]:
    """(key, stored, recounted) wherever the two disagree (`want`: a recount already made)."""
    have = stored(session) if campaign_id is None else stored(session, [campaign_id])
    want = recount(session, campaign_id) if want is None else want
    return [
        (k, have.get(k, 0), want.get(k, 0))
        for k in sorted(set(have) | set(want))
        if have.get(k, 0) != want.get(k, 0)
    ]


def unsquashed(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(~CampaignSeries.squashed))))


def squash(session: Session, campaigns: int = 50) -> int:
    """Fold the rows of up to `campaigns` campaigns into one per count; returns rows folded.
    One squasher at a time; the caller commits."""
    if not try_advisory_lock(session, "campaign_series.squash"):
        return 0
    campaign_ids = list(
        session.scalars(
            select(CampaignSeries.campaign_id).where(~CampaignSeries.squashed).distinct().limit(campaigns)
        )
    )
    if not campaign_ids:
        return 0
    folded = session.execute(
        delete(CampaignSeries)
        .where(CampaignSeries.campaign_id.in_(campaign_ids))
        .returning(
            CampaignSeries.campaign_id, CampaignSeries.bucket_at, CampaignSeries.metric, CampaignSeries.value
        )
    ).all()
    sums: Counter[Key] = Counter()
    for c, b, m, v in folded:
        sums[(c, b, m)] += v
    _insert(session, sums, squashed=True)
    return len(folded)


def _insert(session: Session, values: Counter[Key], squashed: bool) -> None:
    rows = [
        {"campaign_id": c, "bucket_at": b, "metric": m, "value": n, "squashed": squashed}
        for (c, b, m), n in sorted(values.items())
        if n
    ]
    if rows:
        session.execute(insert(CampaignSeries), rows)
