"""Twilio webhooks. Every request must carry a valid X-Twilio-Signature: 403 otherwise,
and nothing is stored."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, request
from twilio.request_validator import RequestValidator

from chatman import inbox
from chatman.extensions import redis_client, settings
from chatman.jobs import enqueue_status_drain
from chatman.messaging.twilio_events import parse_status

bp = Blueprint("twilio_webhooks", __name__, url_prefix="/webhooks/twilio")
log = logging.getLogger(__name__)


def signed_urls() -> list[str]:
    """The URLs Twilio may have signed: PUBLIC_BASE_URL + path + query, else the URL this
    request reached us at (right when no proxy rewrites it, or with TRUST_PROXY_HEADERS)."""
    query = request.query_string.decode()
    tail = request.path + (f"?{query}" if query else "")
    return list(dict.fromkeys([settings().public_base_url + tail, request.root_url.rstrip("/") + tail]))


@bp.before_request
def verify_signature() -> None:
    signature = request.headers.get("X-Twilio-Signature", "")
    validator = RequestValidator(settings().webhook_auth_token)
    if not signature or not any(validator.validate(url, request.form, signature) for url in signed_urls()):
        log.warning("rejected %s: bad or missing X-Twilio-Signature", request.path)
        abort(403)


@bp.post("/status")
def status():
    """Kept in the status inbox at once and applied by a worker (see chatman.inbox)."""
    form = request.form.to_dict()
    if parse_status(form) is None:
        abort(400, "MessageSid and MessageStatus are required")
    if inbox.append(redis_client(), inbox.STATUS, form):
        enqueue_status_drain(redis_client())
    return "", 204
