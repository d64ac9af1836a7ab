"""A/B variants of a campaign's message, and a test group that picks the winner.

A one-time or recurring campaign may carry 2 to 5 variants (A to E), each a message (a
template or free text) with a share of the audience. Variant A is the campaign's own step;
B to E are steps of their own (`variant_of` names A's), so each variant's rows, counters,
report, drill-down and rules are those of its step. A contact's variant is a hash of the
campaign and the contact: the same contact always gets the same one.

With an `ab_test` ({"test_percent": 20, "judge_by": "read", "after_hours": 4}) a one-time
campaign first freezes only its test group (also a hash: the same contacts whatever the
order), which gets the variants by their shares. Its run then waits as `testing`; once
`after_hours` have passed since the launch, the clock picks the variant with the best rate
(read / delivered here; ties go to the earlier letter), records it in the run, and the run
freezes again: the rest of the audience, every one of them with the winner. A contact of the
test group is never frozen again, and the pick is made under the run's row lock, once.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from chatman.campaigns.models import Campaign, CampaignRun, CampaignStep
from chatman.errors import Invalid
from chatman.ledger import counters
from chatman.reports import funnel

LABELS = "ABCDE"
KINDS = ("one_time", "recurring")
JUDGES = tuple(funnel.RATES)  # delivered, read, replied, clicked
MAX_AFTER_HOURS = 7 * 24


def share(campaign_id: int, contact_id: int, salt: str) -> int:
    """0..9999: where a contact falls, the same every time for this campaign and purpose."""
    digest = hashlib.blake2b(f"{campaign_id}:{contact_id}:{salt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 10_000


def check(kind: str, variants: Any, ab_test: Any) -> None:
    """Refuse variants or a test that cannot be run, saying why."""
    if variants is None:
        if ab_test is not None:
            raise Invalid("ab_test", "an A/B test needs variants")
        return
    if kind not in KINDS:
        raise Invalid("variants", "variants are for one-time and recurring campaigns")
    if not isinstance(variants, list) or not 2 <= len(variants) <= len(LABELS):
        raise Invalid("variants", f"give 2 to {len(LABELS)} variants")
    errors: dict[str, list[str]] = {}
    for i, variant in enumerate(variants):
        where = f"variants[{i}]"
        if not isinstance(variant, dict) or set(variant) - {"body", "template_id", "percent"}:
            errors[where] = ['a variant is {"body" or "template_id", "percent"}']
            continue
        if (variant.get("body") is None) == (variant.get("template_id") is None):
            errors[f"{where}.body"] = ["give a body or a template_id, not both"]
        elif variant.get("body") is not None and (
            not isinstance(variant["body"], str) or not variant["body"]
        ):
            errors[f"{where}.body"] = ["a body is text"]
        elif variant.get("template_id") is not None and (
            not isinstance(variant["template_id"], int) or isinstance(variant["template_id"], bool)
        ):
            errors[f"{where}.template_id"] = ["a template id is a number"]
        percent = variant.get("percent")
        if not isinstance(percent, int) or isinstance(percent, bool) or not 1 <= percent <= 99:
            errors[f"{where}.percent"] = ["a whole percentage from 1 to 99"]
    if not errors and sum(v["percent"] for v in variants) != 100:
        errors["variants"] = ["the percentages add up to 100"]
    if ab_test is not None:
        errors.update(_check_test(kind, ab_test))
    if errors:
        raise Invalid.many(errors)


def _check_test(kind: str, ab_test: Any) -> dict[str, list[str]]:
    if kind != "one_time":
        return {"ab_test": ["a test group is for one-time campaigns"]}
    if not isinstance(ab_test, dict) or set(ab_test) != {"test_percent", "judge_by", "after_hours"}:
        return {"ab_test": ['give {"test_percent": 20, "judge_by": "read", "after_hours": 4}']}
    errors = {}
    percent, hours = ab_test["test_percent"], ab_test["after_hours"]
    if not isinstance(percent, int) or isinstance(percent, bool) or not 1 <= percent <= 90:
        errors["ab_test.test_percent"] = ["a whole percentage from 1 to 90"]
    if ab_test["judge_by"] not in JUDGES:
        errors["ab_test.judge_by"] = [f"one of {', '.join(JUDGES)} (the rate of that name)"]
    if not isinstance(hours, int) or isinstance(hours, bool) or not 1 <= hours <= MAX_AFTER_HOURS:
        errors["ab_test.after_hours"] = [f"whole hours from 1 to {MAX_AFTER_HOURS}"]
    return errors


def steps(session: Session, main: CampaignStep) -> list[CampaignStep]:
    """The variants' steps, A first; [] when the campaign has none."""
    others = list(
        session.scalars(
            select(CampaignStep).where(CampaignStep.variant_of == main.id).order_by(CampaignStep.position)
        )
    )
    return [main, *others] if others else []


def save(
    session: Session, campaign: Campaign, main: CampaignStep, variants: Sequence[Mapping] | None
) -> None:
    """Make the variants' steps (replacing earlier ones): A's message becomes the step's own."""
    session.execute(delete(CampaignStep).where(CampaignStep.variant_of == main.id))
    if not variants:
        main.label = main.percent = None
        return
    main.template_id, main.body = variants[0].get("template_id"), variants[0].get("body")
    main.label, main.percent = LABELS[0], variants[0]["percent"]
    for n, variant in enumerate(variants[1:], start=1):
        session.add(
            CampaignStep(
                campaign_id=campaign.id,
                position=n,
                template_id=variant.get("template_id"),
                body=variant.get("body"),
                delay_s=0,
                variant_of=main.id,
                label=LABELS[n],
                percent=variant["percent"],
            )
        )
    session.flush()


def as_dicts(variant_steps: Sequence[CampaignStep]) -> list[dict[str, Any]] | None:
    if not variant_steps:
        return None
    return [
        {
            "label": s.label,
            "step_id": s.id,
            "template_id": s.template_id,
            "body": s.body,
            "percent": s.percent,
        }
        for s in variant_steps
    ]


def in_test_group(campaign: Campaign, contact_id: int) -> bool:
    return share(campaign.id, contact_id, "test") < campaign.ab_test["test_percent"] * 100


def assign(campaign_id: int, contact_id: int, variant_steps: Sequence[CampaignStep]) -> CampaignStep:
    """The contact's variant: its share of the audience, by the variants' percentages."""
    point, upto = share(campaign_id, contact_id, "variant"), 0
    for step in variant_steps:
        upto += step.percent * 100
        if point < upto:
            return step
    return variant_steps[-1]


def phase(run: CampaignRun) -> str | None:
    """testing (the test group's run) or rest (the winner's), or None without a test."""
    return ((run.context or {}).get("ab") or {}).get("phase")


def judged(
    session: Session, run: CampaignRun, variant_steps: Sequence[CampaignStep], judge_by: str
) -> list[dict]:
    """Each variant's counts in this run and the rate it is judged by."""
    per_step: dict[int, Counter[str]] = {s.id: Counter() for s in variant_steps}
    for (_, run_id, step_id, metric), value in counters.stored(session, run.campaign_id).items():
        if run_id == run.id and step_id in per_step:
            per_step[step_id][metric] += value
    return [
        {
            "label": s.label,
            "step_id": s.id,
            "sent": per_step[s.id]["sent"],
            "delivered": per_step[s.id]["delivered"],
            "rate": funnel.rate(per_step[s.id], judge_by),
        }
        for s in variant_steps
    ]


def due_tests(session: Session, now: datetime) -> list[int]:
    """Runs of running campaigns whose test group has had its hours."""
    rows = session.execute(
        select(CampaignRun.id, CampaignRun.occurrence_at, Campaign.ab_test)
        .join(Campaign, Campaign.id == CampaignRun.campaign_id)
        .where(CampaignRun.status == "testing", Campaign.status == "running")
    ).all()
    return [
        r.id for r in rows if r.ab_test and r.occurrence_at + timedelta(hours=r.ab_test["after_hours"]) <= now
    ]


def pick_winner(session: Session, run_id: int, now: datetime) -> bool:
    """Pick the run's winner and open it to the rest of the audience; False when it was not
    waiting (another clock picked it, or it was cancelled). The caller commits and dispatches."""
    run = session.scalars(select(CampaignRun).where(CampaignRun.id == run_id).with_for_update()).one()
    campaign = session.get(Campaign, run.campaign_id)
    if run.status != "testing" or campaign.status != "running" or not campaign.ab_test:
        return False
    main = session.scalars(
        select(CampaignStep).where(CampaignStep.campaign_id == campaign.id, CampaignStep.variant_of.is_(None))
    ).one()
    judge_by = campaign.ab_test["judge_by"]
    scores = judged(session, run, steps(session, main), judge_by)
    best = max(
        scores, key=lambda s: (s["rate"] if s["rate"] is not None else -1.0, -LABELS.index(s["label"]))
    )
    run.context = {
        **(run.context or {}),
        "ab": {
            "phase": "rest",
            "winner": best["label"],
            "winner_step_id": best["step_id"],
            "judge_by": judge_by,
            "decided_at": now.isoformat(),
            "scores": scores,
        },
    }
    run.status, run.frozen_through, run.progress_at = "freezing", 0, now
    return True
