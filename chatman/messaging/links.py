"""Tracked links: each link in a campaign message goes out as `<base>/r/<token>`, and a follow
of it is counted per contact (the message), per link and per campaign.

A token is the link's row id and the message's id, signed with an HMAC of the secret key: it
cannot be guessed or altered, and the redirect goes only to the link's stored address, so it
is no open redirect. The same row and link always give the same token (a resend after a
crash says the same words).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from chatman.dialects import insert_ignore
from chatman.ledger import counters, series
from chatman.ledger.models import Message
from chatman.messaging import engagement
from chatman.messaging.models import LinkClick, TrackedLink
from chatman.messaging.rendering import LINK, tag_links, trailing_punctuation
from chatman.timeutils import utcnow

TOKEN = re.compile(r"^([0-9a-z]{1,13})\.([0-9a-z]{1,13})\.([A-Za-z0-9_-]{22})$")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _DIGITS[r] + out
        if not n:
            return out


def _mac(secret: str, link_id: int, message_id: int) -> str:
    digest = hmac.new(secret.encode(), f"link:{link_id}:{message_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def token_for(secret: str, link_id: int, message_id: int) -> str:
    return f"{_base36(link_id)}.{_base36(message_id)}.{_mac(secret, link_id, message_id)}"


def parse_token(secret: str, token: str) -> tuple[int, int] | None:
    """(link id, message id) of a token this install signed, else None."""
    match = TOKEN.match(token)
    if match is None:
        return None
    link_id, message_id = int(match.group(1), 36), int(match.group(2), 36)
    if not hmac.compare_digest(match.group(3), _mac(secret, link_id, message_id)):
        return None
    return link_id, message_id


class Tracker:
    """Rewrites the links of one campaign's messages; knows the campaign's links it has seen."""

    def __init__(self, session: Session, base_url: str, secret: str) -> None:
        self.session, self.base_url, self.secret = session, base_url.rstrip("/"), secret
        self._ids: dict[tuple[int, str], int] = {}

    def link_id(self, campaign_id: int, url: str) -> int:
        key = (campaign_id, url)
        if key not in self._ids:
            digest = hashlib.sha256(url.encode()).hexdigest()
            insert_ignore(
                self.session,
                TrackedLink,
                [{"campaign_id": campaign_id, "url": url, "url_hash": digest, "created_at": utcnow()}],
                ["campaign_id", "url_hash"],
            )
            self._ids[key] = self.session.scalar(
                select(TrackedLink.id).where(
                    TrackedLink.campaign_id == campaign_id, TrackedLink.url_hash == digest
                )
            )
        return self._ids[key]

    def rewrite(self, text: str, campaign_id: int, message_id: int, utm_campaign: str | None) -> str:
        """`text` with each link tagged with utm_campaign and sent as a tracked link."""

        def short(match: re.Match) -> str:
            url, trailing = trailing_punctuation(match.group(0))
            link_id = self.link_id(campaign_id, url)
            return f"{self.base_url}/r/{token_for(self.secret, link_id, message_id)}{trailing}"

        return LINK.sub(short, tag_links(text, utm_campaign))


def rewriter(
    tracker: Tracker | None, campaign_id: int, message_id: int, utm: str | None
) -> Callable[[str], str]:
    """What a campaign message's text goes through: tracked links, or utm tags only."""
    if tracker is None:
        return lambda text: tag_links(text, utm)
    return lambda text: tracker.rewrite(text, campaign_id, message_id, utm)


def target(session: Session, link_id: int, message_id: int) -> str | None:
    """Where a link of a message leads, without counting a click."""
    return session.scalar(
        select(TrackedLink.url)
        .join(Message, Message.campaign_id == TrackedLink.campaign_id)
        .where(TrackedLink.id == link_id, Message.id == message_id)
    )


def follow(session: Session, secret: str, token: str, now: datetime | None = None) -> str | None:
    """Count a click on `token` and return where it leads; None for a token we did not sign
    or whose link or message is gone. The caller commits."""
    ids = parse_token(secret, token)
    if ids is None:
        return None
    link_id, message_id = ids
    now = now or utcnow()
    link = session.get(TrackedLink, link_id)
    message = session.execute(
        select(Message.campaign_id, Message.run_id, Message.step_id, Message.clicked_at)
        .where(Message.id == message_id)
        .with_for_update()
    ).first()
    if link is None or message is None or message.campaign_id != link.campaign_id:
        return None
    first_of_link = (
        session.scalar(
            select(LinkClick.id)
            .where(LinkClick.message_id == message_id, LinkClick.link_id == link_id)
            .limit(1)
        )
        is None
    )
    session.add(LinkClick(link_id=link_id, message_id=message_id, clicked_at=now))
    metrics = {engagement.CLICKS: 1}
    if first_of_link:
        metrics[f"{engagement.LINK}{link_id}"] = 1
    if message.clicked_at is None:
        session.execute(update(Message).where(Message.id == message_id).values(clicked_at=now))
        metrics["clicked"] = 1
        series.add(session, [(message.campaign_id, "clicked", now)])
    counters.apply(session, [(message.campaign_id, message.run_id, message.step_id, metrics)])
    return link.url
