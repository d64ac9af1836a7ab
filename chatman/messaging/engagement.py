"""What contacts did after a campaign message, counted beside the ledger's counters: buttons
tapped (per payload), opt-outs, and tracked-link clicks (per link, and in all).

Each is counted once per message (a contact who taps the same button twice is one tap of
it), in the transaction of the inbound message or click it counts, and `recount` computes
them afresh. What they are counted from holds no contact data (a message's taps, its
`opted_out_at`, its clicks), so erasing a contact changes neither the counts nor the recount.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from chatman.dialects import insert_ignore
from chatman.ledger import counters
from chatman.ledger.models import Message
from chatman.messaging.models import LinkClick, MessageTap

TAPPED = "tapped:"
OPTED_OUT = "opted_out"
LINK = "link:"
CLICKS = "clicks"
# A payload is kept in a counter's name up to this length (a metric is 48 characters).
PAYLOAD_CHARS = 40


def tap_metric(payload: str) -> str:
    return TAPPED + payload[:PAYLOAD_CHARS]


def count_reply(
    session: Session, message_id: int, payload: str | None, opted_out: bool, now: datetime
) -> None:
    """Count a tap of `payload` and/or an opt-out answering `message_id`, unless an earlier
    reply already counted it (the unique tap row and the opt-out time decide, so two at once
    count once)."""
    metrics = {}
    if payload and insert_ignore(
        session,
        MessageTap,
        [{"message_id": message_id, "payload": payload, "tapped_at": now}],
        ["message_id", "payload"],
    ):
        metrics[tap_metric(payload)] = 1
    if (
        opted_out
        and session.execute(
            update(Message)
            .where(Message.id == message_id, Message.opted_out_at.is_(None))
            .values(opted_out_at=now)
            .returning(Message.id)
        ).first()
    ):
        metrics[OPTED_OUT] = 1
    if metrics:
        key = session.execute(
            select(Message.campaign_id, Message.run_id, Message.step_id).where(Message.id == message_id)
        ).one()
        counters.apply(session, [(*key, metrics)])


def recount(session: Session, campaign_id: int | None = None) -> dict[counters.Key, int]:
    """Taps, opt-outs and clicks computed afresh from the messages' taps, opt-out times and clicks."""
    key = (Message.campaign_id, Message.run_id, Message.step_id)
    counts: Counter[counters.Key] = Counter()

    def where(query):
        query = query.where(Message.campaign_id.is_not(None))
        return query if campaign_id is None else query.where(Message.campaign_id == campaign_id)

    taps = where(
        select(*key, MessageTap.payload, func.count())
        .join(Message, Message.id == MessageTap.message_id)
        .group_by(*key, MessageTap.payload)
    )
    for c, r, s, payload, n in session.execute(taps):
        counts[(c, r, s, tap_metric(payload))] += n
    opt_outs = where(select(*key, func.count()).where(Message.opted_out_at.is_not(None)).group_by(*key))
    for c, r, s, n in session.execute(opt_outs):
        counts[(c, r, s, OPTED_OUT)] += n
    clicks = where(
        select(*key, LinkClick.link_id, func.count(), func.count(func.distinct(LinkClick.message_id)))
        .join(Message, Message.id == LinkClick.message_id)
        .group_by(*key, LinkClick.link_id)
    )
    for c, r, s, link_id, total, unique in session.execute(clicks):
        counts[(c, r, s, CLICKS)] += total
        counts[(c, r, s, f"{LINK}{link_id}")] += unique
    return {k: v for k, v in counts.items() if v}


def is_engagement(metric: str) -> bool:
    return metric.startswith((TAPPED, LINK)) or metric in (OPTED_OUT, CLICKS)
