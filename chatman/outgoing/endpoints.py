"""Webhook endpoints as the API edits them, and their deliveries as the audit shows them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from chatman.errors import Invalid, NotFound
from chatman.outgoing.addresses import check_target
from chatman.outgoing.deliveries import disable_endpoint
from chatman.outgoing.models import WebhookDelivery, WebhookEndpoint
from chatman.outgoing.signing import new_secret
from chatman.timeutils import utcnow

STATUSES = ("pending", "delivered", "failed")


def get_endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise NotFound(f"webhook endpoint {endpoint_id} not found")
    return endpoint


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def create_endpoint(
    session: Session, data: Mapping[str, Any], allow_private: bool, now: datetime | None = None
) -> WebhookEndpoint:
    """A new endpoint with a fresh signing secret (`endpoint.secret`: show it to whoever
    created it, once). Raises Invalid for a missing name or url, or a url webhooks may not
    go to (see addresses.check_target)."""
    now = now or utcnow()
    for required in ("name", "url"):
        if required not in data:
            raise Invalid(required, "required")
    endpoint = WebhookEndpoint(enabled=True, secret=new_secret(), created_at=now, updated_at=now)
    _apply(session, endpoint, data, allow_private, now)
    session.add(endpoint)
    session.flush()
    return endpoint


def update_endpoint(
    session: Session,
    endpoint_id: int,
    data: Mapping[str, Any],
    allow_private: bool,
    now: datetime | None = None,
) -> WebhookEndpoint:
    """Change name, url or enabled. Turning an endpoint off fails its pending deliveries;
    turning it on again (after a 410, say) clears why it was off."""
    now = now or utcnow()
    endpoint = get_endpoint(session, endpoint_id)
    _apply(session, endpoint, data, allow_private, now)
    session.flush()
    return endpoint


def rotate_secret(session: Session, endpoint_id: int) -> WebhookEndpoint:
    """A new signing secret, used from the next attempt on (the old one stops at once)."""
    endpoint = get_endpoint(session, endpoint_id)
    endpoint.secret = new_secret()
    session.flush()
    return endpoint


def delete_endpoint(session: Session, endpoint_id: int) -> None:
    """Delete an endpoint with its deliveries and their attempts."""
    session.delete(get_endpoint(session, endpoint_id))
    session.flush()


def _apply(
    session: Session, endpoint: WebhookEndpoint, data: Mapping[str, Any], allow_private: bool, now: datetime
) -> None:
    if "name" in data:
        name = data["name"]
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise Invalid("name", "a name of 1 to 200 characters")
        endpoint.name = name
    if "url" in data:
        check_target(data["url"], allow_private)
        endpoint.url = data["url"]
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise Invalid("enabled", "true or false")
        if data["enabled"] and not endpoint.enabled:
            endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = True, None, None
        elif not data["enabled"] and endpoint.enabled and endpoint.id is not None:
            session.flush()
            disable_endpoint(session, endpoint.id, "turned off through the API", now)
            session.refresh(endpoint)
        elif not data["enabled"]:
            endpoint.enabled, endpoint.disabled_reason, endpoint.disabled_at = False, "created off", now


def list_deliveries(
    session: Session, endpoint_id: int, after: int = 0, limit: int = 100, status: str | None = None
) -> list[WebhookDelivery]:
    """An endpoint's deliveries by id (keyset: the page after id `after`)."""
    get_endpoint(session, endpoint_id)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint_id, WebhookDelivery.id > after)
        .order_by(WebhookDelivery.id)
        .limit(limit)
    )
    if status is not None:
        if status not in STATUSES:
            raise Invalid("status", f"one of {', '.join(STATUSES)}")
        query = query.where(WebhookDelivery.status == status)
    return list(session.scalars(query))


def get_delivery(session: Session, delivery_id: int) -> WebhookDelivery:
    """A delivery with its attempts (`delivery.attempts`, first to last)."""
    delivery = session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .options(selectinload(WebhookDelivery.attempts))
    )
    if delivery is None:
        raise NotFound(f"webhook delivery {delivery_id} not found")
    return delivery
