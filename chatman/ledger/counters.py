"""Counters per (run, step, metric), kept in step with message rows, and their recount.

Every metric is a function of one message row (`metrics_of`). A state change inserts the
difference between the row's metrics before and after, in the same transaction as the
change, so the counters always equal a recount from the rows (`recount`). A counter is the
sum of its delta rows (`stored`); `squash` folds each run's rows into one per counter. Rows
are only ever inserted and squashed, never updated: writers of the same counter do not wait
on each other, and a reader sees the deltas of every committed change and no other.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.orm import Session

from chatman.dialects import try_advisory_lock
from chatman.ledger import states
from chatman.ledger.models import CampaignStat, Message

Key = tuple[int, int, int, str]  # campaign_id, run_id, step_id, metric
# What a row's metrics are a function of (with whether it was submitted and replied to).
COUNTED = (
    Message.campaign_id,
    Message.run_id,
    Message.step_id,
    Message.status,
    Message.skip_reason,
    Message.error_code,
)


def metrics_of(
    status: str,
    skip_reason: str | None,
    error_code: str | None,
    submitted: bool,
    replied: bool = False,
    clicked: bool = False,
) -> set[str]:
    metrics = {"targeted"}
    if replied:
        metrics.add("replied")
    if clicked:
        metrics.add("clicked")
    if status == states.SKIPPED:
        metrics |= {"skipped", f"skipped:{skip_reason or 'unknown'}"}
    if submitted:
        metrics.add("submitted")
    if status in (states.SENT, states.DELIVERED, states.READ):
        metrics.add("sent")
    if status in (states.DELIVERED, states.READ):
        metrics.add("delivered")
    if status == states.READ:
        metrics.add("read")
    if status == states.FAILED:
        metrics |= {"failed", f"failed:{error_code or 'unknown'}"}
    if status == states.UNCONFIRMED:
        metrics.add("unconfirmed")
    if status == states.HELD:
        metrics.add("held")
    return metrics


def delta(before: set[str], after: set[str]) -> dict[str, int]:
    changes = {m: 1 for m in after - before}
    changes.update({m: -1 for m in before - after})
    return changes


def apply(session: Session, changes: Iterable[tuple[int, int, int, dict[str, int]]]) -> None:
    """Add metric deltas given per (campaign, run, step)."""
    total: Counter[Key] = Counter()
    for campaign_id, run_id, step_id, metrics in changes:
        if campaign_id is None:  # a conversation message: counted by no campaign
            continue
        for metric, n in metrics.items():
            total[(campaign_id, run_id, step_id, metric)] += n
    _insert(session, total, squashed=False)


KEY_COLUMNS = (CampaignStat.campaign_id, CampaignStat.run_id, CampaignStat.step_id, CampaignStat.metric)


def stored(session: Session, campaign_id: int | Sequence[int] | None = None) -> dict[Key, int]:
    """Every counter (the sum of its rows), of one campaign, several, or all."""
    query = select(*KEY_COLUMNS, func.sum(CampaignStat.value)).group_by(*KEY_COLUMNS)
    if isinstance(campaign_id, int):
        query = query.where(CampaignStat.campaign_id == campaign_id)
    elif campaign_id is not None:
        query = query.where(CampaignStat.campaign_id.in_(list(campaign_id)))
    return {(c, r, s, m): int(v) for c, r, s, m, v in session.execute(query) if v}


def squash(session: Session, runs: int = 200) -> int:
    """Fold the rows of up to `runs` runs into one row per counter; returns rows folded. One
    squasher at a time (a second one returns 0); the caller commits. Rows that writers insert
    meanwhile are not seen and wait for the next squash, so every sum stays what it was."""
    if not try_advisory_lock(session, "campaign_stats.squash"):
        return 0
    run_ids = list(
        session.scalars(select(CampaignStat.run_id).where(~CampaignStat.squashed).distinct().limit(runs))
    )
    if not run_ids:
        return 0
    folded = session.execute(
        delete(CampaignStat)
        .where(CampaignStat.run_id.in_(run_ids))
        .returning(*KEY_COLUMNS, CampaignStat.value)
    ).all()
    sums: Counter[Key] = Counter()
    for c, r, s, m, v in folded:
        sums[(c, r, s, m)] += v
    _insert(session, sums, squashed=True)
    return len(folded)


def _insert(session: Session, values: Counter[Key], squashed: bool) -> None:
    rows = [
        {"campaign_id": c, "run_id": r, "step_id": s, "metric": m, "value": n, "squashed": squashed}
        for (c, r, s, m), n in sorted(values.items())
        if n
    ]
    if rows:
        session.execute(insert(CampaignStat), rows)


def unsquashed(session: Session) -> bool:
    return bool(session.scalar(select(exists().where(~CampaignStat.squashed))))


def recount(session: Session, campaign_id: int | None = None) -> dict[Key, int]:
    """Counters computed afresh from the message rows (grouped in SQL, streamed)."""
    groups = (
        *COUNTED,
        Message.submitted_at.is_not(None),
        Message.replied_at.is_not(None),
        Message.clicked_at.is_not(None),
    )
    query = select(*groups, func.count()).where(Message.campaign_id.is_not(None)).group_by(*groups)
    if campaign_id is not None:
        query = query.where(Message.campaign_id == campaign_id)
    counts: Counter[Key] = Counter()
    for c, r, s, status, reason, code, submitted, replied, clicked, n in session.execute(query):
        for metric in metrics_of(status, reason, code, bool(submitted), bool(replied), bool(clicked)):
            counts[(c, r, s, metric)] += n
    return dict(counts)


ROW_METRICS = frozenset(
    ("targeted", "replied", "clicked", "skipped", "submitted", "sent", "delivered", "read", "failed")
    + ("unconfirmed", "held")
)


def is_row_metric(metric: str) -> bool:
    """A metric of one message row (others, such as taps, are counted from what the contact
    did after and recounted by `messaging.engagement`)."""
    return metric in ROW_METRICS or metric.startswith(("skipped:", "failed:"))


def differences(session: Session, campaign_id: int | None = None) -> list[tuple[Key, int, int]]:
    """(key, stored, recounted) wherever the two disagree, over the row metrics."""
    have = {k: v for k, v in stored(session, campaign_id).items() if is_row_metric(k[3])}
    want = recount(session, campaign_id)
    return [
        (k, have.get(k, 0), want.get(k, 0))
        for k in sorted(set(have) | set(want))
        if have.get(k, 0) != want.get(k, 0)
    ]
