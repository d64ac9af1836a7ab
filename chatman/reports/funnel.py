"""A campaign's funnel, per campaign, run, step and step within run: who was targeted, skipped
(by reason), sent, delivered, read, replied, tapped, clicked, failed (by code) and opted out,
with the rates a marketer judges it by. Read from the counters alone."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from chatman.ledger import counters
from chatman.messaging import engagement
from chatman.messaging.models import TrackedLink
from chatman.reports import errors

COUNTS = (
    "targeted",
    "skipped",
    "held",
    "submitted",
    "sent",
    "delivered",
    "read",
    "replied",
    "clicked",
    "clicks",
    "failed",
    "unconfirmed",
    "opted_out",
)
# rate -> (numerator, denominator); shown with its formula.
RATES = {
    "delivered": ("delivered", "sent"),
    "read": ("read", "delivered"),
    "replied": ("replied", "delivered"),
    "clicked": ("clicked", "delivered"),
}
FORMULAS = {name: f"{top} / {bottom}" for name, (top, bottom) in RATES.items()}


def rate(counts: Mapping[str, int], name: str) -> float | None:
    """A rate as a fraction (None when its denominator is 0)."""
    top, bottom = RATES[name]
    return round(counts.get(top, 0) / counts[bottom], 4) if counts.get(bottom) else None


def funnel(metrics: Mapping[str, int], link_urls: Mapping[int, str] | None = None) -> dict[str, Any]:
    """One funnel from metric -> count."""
    counts = {name: metrics.get(name, 0) for name in COUNTS}
    skipped = {m.split(":", 1)[1]: n for m, n in metrics.items() if m.startswith("skipped:") and n}
    codes = {m.split(":", 1)[1]: n for m, n in metrics.items() if m.startswith("failed:") and n}
    groups: Counter[str] = Counter({group: 0 for group in (*errors.GROUPS, "other")})
    for code, n in codes.items():
        groups[errors.group_of(code)] += n
    taps = {
        m[len(engagement.TAPPED) :]: n for m, n in metrics.items() if m.startswith(engagement.TAPPED) and n
    }
    links = [
        {"link_id": int(m[len(engagement.LINK) :]), "clicked": n}
        for m, n in metrics.items()
        if m.startswith(engagement.LINK) and n
    ]
    for link in links:
        link["url"] = (link_urls or {}).get(link["link_id"])
    return {
        "counts": counts,
        "rates": {name: rate(counts, name) for name in RATES},
        "skipped": dict(sorted(skipped.items())),
        "failures": {
            **dict(groups),
            "codes": [
                {"code": code, "meaning": errors.meaning(code), "group": errors.group_of(code), "count": n}
                for code, n in sorted(codes.items(), key=lambda item: (-item[1], item[0]))
            ],
        },
        "taps": dict(sorted(taps.items(), key=lambda item: (-item[1], item[0]))),
        "links": sorted(links, key=lambda link: (-link["clicked"], link["link_id"])),
    }


def link_urls(session: Session, campaign_ids: Iterable[int]) -> dict[int, str]:
    ids = list(campaign_ids)
    query = select(TrackedLink.id, TrackedLink.url).where(TrackedLink.campaign_id.in_(ids))
    return {link_id: url for link_id, url in session.execute(query)}


def campaign_report(session: Session, campaign_id: int) -> dict[str, Any]:
    """The campaign's funnel over all runs, per run (with each step in it) and per step (over
    all runs: a drip's step by step view)."""
    total: Counter[str] = Counter()
    per_run: dict[int, Counter[str]] = defaultdict(Counter)
    per_step: dict[int, Counter[str]] = defaultdict(Counter)
    per_run_step: dict[int, dict[int, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for (_, run_id, step_id, metric), value in counters.stored(session, campaign_id).items():
        total[metric] += value
        per_run[run_id][metric] += value
        per_step[step_id][metric] += value
        per_run_step[run_id][step_id][metric] += value
    urls = link_urls(session, [campaign_id])
    return {
        "campaign_id": campaign_id,
        "formulas": FORMULAS,
        **funnel(total, urls),
        "runs": {
            run_id: {
                **funnel(metrics, urls),
                "steps": {s: funnel(m, urls) for s, m in sorted(per_run_step[run_id].items())},
            }
            for run_id, metrics in sorted(per_run.items())
        },
        "steps": {step_id: funnel(metrics, urls) for step_id, metrics in sorted(per_step.items())},
    }


def summaries(session: Session, campaign_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Counts and rates of several campaigns (a page of the campaign list) in one query."""
    totals: dict[int, Counter[str]] = {c: Counter() for c in campaign_ids}
    per_run: dict[int, dict[int, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    per_step: dict[int, dict[int, dict[int, Counter[str]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(Counter))
    )
    if campaign_ids:
        for (campaign_id, run_id, step_id, metric), value in counters.stored(session, campaign_ids).items():
            totals[campaign_id][metric] += value
            per_run[campaign_id][run_id][metric] += value
            per_step[campaign_id][run_id][step_id][metric] += value
    return {
        c: {
            "counters": dict(totals[c]),
            "rates": {name: rate(totals[c], name) for name in RATES},
            "runs": {r: dict(m) for r, m in per_run[c].items()},
            "steps": {r: {str(s): dict(m) for s, m in steps.items()} for r, steps in per_step[c].items()},
        }
        for c in campaign_ids
    }


def progress(counts: Mapping[str, int], finished: bool) -> float:
    """How far a send has gone, 0 to 1: rows handed to the provider or settled without it. A
    row that failed after it was submitted counts in both, so only a finished run shows 1."""
    targeted = counts.get("targeted", 0)
    if finished:
        return 1.0
    if not targeted:
        return 0.0
    done = counts.get("submitted", 0) + counts.get("skipped", 0)
    return round(min(0.99, done / targeted), 4)
