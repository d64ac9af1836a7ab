"""Freezing a run's audience into ledger rows, in bulk and resumable."""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy import and_, case, literal, not_, or_, select, update
from sqlalchemy.orm import Session

from chatman.campaigns import variants
from chatman.campaigns.models import Campaign, CampaignRun, CampaignSegment, CampaignStep
from chatman.contacts.models import Contact
from chatman.contacts.segments import segment_condition
from chatman.dialects import insert_ignore_returning, insert_ignore_select
from chatman.ledger import counters
from chatman.ledger.models import Message
from chatman.timeutils import utcnow

FREEZE_PAGE = 5000


def audience_condition(session: Session, campaign_id: int):
    """Contacts in any include segment and in no exclude segment (DND is handled at freeze)."""
    links = session.execute(
        select(CampaignSegment.segment_id, CampaignSegment.mode).where(
            CampaignSegment.campaign_id == campaign_id
        )
    ).all()
    include = [segment_condition(session, s) for s, mode in links if mode == "include"]
    exclude = [segment_condition(session, s) for s, mode in links if mode == "exclude"]
    condition = or_(*include) if include else literal(False)
    return and_(condition, *(not_(e) for e in exclude)) if exclude else condition


def freeze_page(session: Session, run: CampaignRun, step: CampaignStep, page: int = FREEZE_PAGE) -> int:
    """Insert the next page of the audience as message rows (DND contacts as skipped).

    Keyset-paginated on contact id from `run.frozen_through`; rows and counters are written
    in the caller's transaction, so a crash between pages resumes where it stopped and the
    unique (run, step, contact) key makes a repeated page harmless. Returns contacts added.
    """
    condition = audience_condition(session, run.campaign_id)
    ids = list(
        session.scalars(
            select(Contact.id)
            .where(condition, Contact.id > run.frozen_through)
            .order_by(Contact.id)
            .limit(page)
        )
    )
    if not ids:
        return 0
    variant_steps = variants.steps(session, step)
    if variant_steps:
        return _freeze_variants(session, run, variant_steps, ids)
    rows = select(
        literal(run.campaign_id),
        literal(run.id),
        literal(step.id),
        Contact.id,
        case((Contact.dnd.is_(True), literal("skipped")), else_=literal("pending")),
        case((Contact.dnd.is_(True), literal("dnd")), else_=literal(None)),
        literal(0),
        literal(utcnow(), Message.created_at.type),
    ).where(Contact.id.in_(ids))
    statuses = insert_ignore_select(
        session,
        Message,
        rows,
        ["campaign_id", "run_id", "step_id", "contact_id", "status", "skip_reason", "attempts", "created_at"],
        ["run_id", "step_id", "contact_id"],
        returning="status",
    )
    dnd = statuses.count("skipped")
    added = len(statuses)
    counters.apply(
        session, [(run.campaign_id, run.id, step.id, {"targeted": added, "skipped": dnd, "skipped:dnd": dnd})]
    )
    session.execute(
        update(CampaignRun)
        .where(CampaignRun.id == run.id)
        .values(frozen_through=ids[-1], progress_at=utcnow())
    )
    run.frozen_through = ids[-1]
    return added


def _freeze_variants(
    session: Session, run: CampaignRun, variant_steps: list[CampaignStep], ids: list[int]
) -> int:
    """A page of an A/B campaign's audience: each contact on its variant's step; with a test
    group, only its contacts while testing, and only the others (on the winner) after."""
    campaign = session.get(Campaign, run.campaign_id)
    phase = variants.phase(run)
    winner = None
    if phase == "rest":
        winner_id = run.context["ab"]["winner_step_id"]
        winner = next(s for s in variant_steps if s.id == winner_id)
    dnd = {
        contact_id: flag
        for contact_id, flag in session.execute(select(Contact.id, Contact.dnd).where(Contact.id.in_(ids)))
    }
    now = utcnow()
    rows = []
    for contact_id in ids:
        if phase is not None and variants.in_test_group(campaign, contact_id) != (phase == "testing"):
            continue
        chosen = winner or variants.assign(campaign.id, contact_id, variant_steps)
        rows.append(
            {
                "campaign_id": run.campaign_id,
                "run_id": run.id,
                "step_id": chosen.id,
                "contact_id": contact_id,
                "status": "skipped" if dnd[contact_id] else "pending",
                "skip_reason": "dnd" if dnd[contact_id] else None,
                "attempts": 0,
                "created_at": now,
            }
        )
    inserted = insert_ignore_returning(
        session, Message, rows, ["run_id", "step_id", "contact_id"], ("step_id", "status")
    )
    per_step: dict[int, Counter[str]] = defaultdict(Counter)
    for step_id, status in inserted:
        per_step[step_id]["targeted"] += 1
        if status == "skipped":
            per_step[step_id]["skipped"] += 1
            per_step[step_id]["skipped:dnd"] += 1
    counters.apply(session, [(run.campaign_id, run.id, s, dict(m)) for s, m in per_step.items()])
    session.execute(
        update(CampaignRun).where(CampaignRun.id == run.id).values(frozen_through=ids[-1], progress_at=now)
    )
    run.frozen_through = ids[-1]
    return len(ids)  # contacts looked at: a page of only the other group's goes on to the next
