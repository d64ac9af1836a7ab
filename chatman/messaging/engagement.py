"""What contacts did after a campaign message, counted beside the ledger's counters: buttons
tapped (per payload), opt-outs, and tracked-link clicks (per link, and in all).

Each is counted once per message (a contact who taps the same button twice is one tap of
it), in the transaction of the inbound message or click it counts, and `recount` computes
them afresh from those rows.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatman.ledger import counters
from chatman.ledger.models import Message
from chatman.messaging.models import InboundMessage, LinkClick

TAPPED = "tapped:"
OPTED_OUT = "opted_out"
LINK = "link:"
CLICKS = "clicks"
# A payload is kept in a counter's name up to this length (a metric is 48 characters).
PAYLOAD_CHARS = 40


def tap_metric(payload: str) -> str:
    return TAPPED + payload[:PAYLOAD_CHARS]


def count_reply(
    session: Session, inbound_id: int, message_id: int, payload: str | None, opted_out: bool
) -> None:
    """Count a tap of `payload` and/or an opt-out on `message_id`, unless an earlier inbound
    message already counted it."""
    metrics = {}
    if payload and not _earlier(session, inbound_id, message_id, InboundMessage.button_payload == payload):
        metrics[tap_metric(payload)] = 1
    if opted_out and not _earlier(session, inbound_id, message_id, InboundMessage.handled_by == "opt_out"):
        metrics[OPTED_OUT] = 1
    if metrics:
        key = session.execute(
            select(Message.campaign_id, Message.run_id, Message.step_id).where(Message.id == message_id)
        ).one()
        counters.apply(session, [(*key, metrics)])


def _earlier(session: Session, inbound_id: int, message_id: int, condition) -> bool:
    return (
        session.scalar(
            select(InboundMessage.id)
            .where(InboundMessage.reply_to_id == message_id, InboundMessage.id != inbound_id, condition)
            .limit(1)
        )
        is not None
    )


def recount(session: Session, campaign_id: int | None = None) -> dict[counters.Key, int]:
    """Taps, opt-outs and clicks computed afresh from the inbound messages and clicks."""
    key = (Message.campaign_id, Message.run_id, Message.step_id)
    counts: Counter[counters.Key] = Counter()

    def where(query):
        query = query.where(Message.campaign_id.is_not(None))
        return query if campaign_id is None else query.where(Message.campaign_id == campaign_id)

    taps = where(
        select(*key, InboundMessage.button_payload, func.count(func.distinct(InboundMessage.reply_to_id)))
        .join(Message, Message.id == InboundMessage.reply_to_id)
        .where(InboundMessage.button_payload.is_not(None), InboundMessage.button_payload != "")
        .group_by(*key, InboundMessage.button_payload)
    )
    for c, r, s, payload, n in session.execute(taps):
        counts[(c, r, s, tap_metric(payload))] += n
    opt_outs = where(
        select(*key, func.count(func.distinct(InboundMessage.reply_to_id)))
        .join(Message, Message.id == InboundMessage.reply_to_id)
        .where(InboundMessage.handled_by == "opt_out")
        .group_by(*key)
    )
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
