"""Recount every report figure from the ledger and say where a stored one differs: the
counters (per run, step and metric), the engagement counts (taps, opt-outs, link clicks) and
the time-series rollups."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from chatman.ledger import counters, series
from chatman.messaging import engagement


@dataclass(frozen=True)
class Difference:
    kind: str  # counter, engagement or series
    key: tuple
    stored: int
    recount: int

    def __str__(self) -> str:
        if self.kind == "series":
            campaign, bucket, metric = self.key
            where = f"campaign {campaign} {bucket.isoformat()} {metric}"
        else:
            campaign, run, step, metric = self.key
            where = f"campaign {campaign} run {run} step {step} {metric}"
        return f"{self.kind} {where}: stored {self.stored}, recount {self.recount}"


@dataclass(frozen=True)
class Verified:
    checked: int
    differences: list[Difference]


def verify(session: Session, campaign_id: int | None = None) -> Verified:
    differences = [Difference("counter", *d) for d in counters.differences(session, campaign_id)]
    have = {k: v for k, v in counters.stored(session, campaign_id).items() if engagement.is_engagement(k[3])}
    want = engagement.recount(session, campaign_id)
    differences += [
        Difference("engagement", k, have.get(k, 0), want.get(k, 0))
        for k in sorted(set(have) | set(want))
        if have.get(k, 0) != want.get(k, 0)
    ]
    timed = series.recount(session, campaign_id)
    differences += [Difference("series", *d) for d in series.differences(session, campaign_id, timed)]
    checked = len(counters.recount(session, campaign_id)) + len(want) + len(timed)
    return Verified(checked, differences)
