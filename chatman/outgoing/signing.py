"""Standard Webhooks (standard-webhooks.com 1.0.0): secrets, message ids, the body and the
three headers a receiver verifies with any Standard Webhooks library."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def new_webhook_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def body(event_type: str, created_at: datetime, payload: Mapping[str, Any]) -> str:
    """The request body: the spec's envelope around the payload. Built from what the delivery
    row keeps, with sorted keys, so every attempt sends the very same bytes (the database may
    hand a JSON object back with its keys in another order)."""
    envelope = {"type": event_type, "timestamp": created_at.isoformat(), "data": payload}
    return json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def headers(secret: str, webhook_id: str, data: str, signed_at: datetime) -> dict[str, str]:
    signed_at = signed_at.astimezone(UTC)  # the library reads the wall time as UTC
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(signed_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, signed_at, data),
    }
