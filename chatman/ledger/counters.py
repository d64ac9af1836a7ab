"""Counters per (run, step, metric), kept in step with message rows, and their recount.

Every metric is a function of one message row (`metrics_of`). A state change adds the
difference between the row's metrics before and after, in the same transaction as the
change, so the counters always equal a recount from the rows (`recount`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatman.dialects import add_counters
from chatman.ledger import states
from chatman.ledger.models import CampaignStat, Message

Key = tuple[int, int, int, str]  # campaign_id, run_id, step_id, metric


def metrics_of(
    status: str, skip_reason: str | None, error_code: str | None, submitted: bool, replied: bool = False
) -> set[str]:
    metrics = {"targeted"}
    if replied:
        metrics.add("replied")
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
    rows = [
        {"campaign_id": c, "run_id": r, "step_id": s, "metric": m, "value": n}
        for (c, r, s, m), n in sorted(total.items())
        if n
    ]
    add_counters(session, CampaignStat, rows, ["run_id", "step_id", "metric"])


def stored(session: Session, campaign_id: int | None = None) -> dict[Key, int]:
    query = select(
        CampaignStat.campaign_id,
        CampaignStat.run_id,
        CampaignStat.step_id,
        CampaignStat.metric,
        CampaignStat.value,
    )
    if campaign_id is not None:
        query = query.where(CampaignStat.campaign_id == campaign_id)
    return {(c, r, s, m): v for c, r, s, m, v in session.execute(query) if v}


def recount(session: Session, campaign_id: int | None = None) -> dict[Key, int]:
    """Counters computed afresh from the message rows (grouped in SQL, streamed)."""
    groups = (
        Message.campaign_id,
        Message.run_id,
        Message.step_id,
        Message.status,
        Message.skip_reason,
        Message.error_code,
        Message.submitted_at.is_not(None),
        Message.replied_at.is_not(None),
    )
    query = select(*groups, func.count()).where(Message.campaign_id.is_not(None)).group_by(*groups)
    if campaign_id is not None:
        query = query.where(Message.campaign_id == campaign_id)
    counts: Counter[Key] = Counter()
    for c, r, s, status, reason, code, submitted, replied, n in session.execute(query):
        for metric in metrics_of(status, reason, code, bool(submitted), bool(replied)):
            counts[(c, r, s, metric)] += n
    return dict(counts)


def differences(session: Session, campaign_id: int | None = None) -> list[tuple[Key, int, int]]:
    """(key, stored, recounted) wherever the two disagree."""
    have, want = stored(session, campaign_id), recount(session, campaign_id)
    return [
        (k, have.get(k, 0), want.get(k, 0))
        for k in sorted(set(have) | set(want))
        if have.get(k, 0) != want.get(k, 0)
    ]
