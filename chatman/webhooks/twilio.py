"""Twilio webhooks. Every request must carry a valid X-Twilio-Signature: 403 otherwise,
and nothing is stored."""

from __future__ import annotations

import logging

from flask import Blueprint, abort, request
from twilio.request_validator import RequestValidator

from chatman.extensions import request_session, settings
from chatman.ledger.status import StatusUpdate, record

bp = Blueprint("twilio_webhooks", __name__, url_prefix="/webhooks/twilio")
log = logging.getLogger(__name__)


def signed_url() -> str:
    """The URL Twilio signed: the public base URL (we may sit behind a proxy) + path + query."""
    query = request.query_string.decode()
    return settings().public_base_url + request.path + (f"?{query}" if query else "")


@bp.before_request
def verify_signature() -> None:
    signature = request.headers.get("X-Twilio-Signature", "")
    validator = RequestValidator(settings().webhook_auth_token)
    if not signature or not validator.validate(signed_url(), request.form, signature):
        log.warning("rejected %s: bad or missing X-Twilio-Signature", request.path)
        abort(403)


@bp.post("/status")
def status():
    form = request.form
    sid, state = form.get("MessageSid"), form.get("MessageStatus")
    if not sid or not state:
        abort(400, "MessageSid and MessageStatus are required")
    event = StatusUpdate(
        provider_sid=sid,
        status=state.lower(),
        error_code=form.get("ErrorCode") or None,
        error_message=form.get("ErrorMessage") or None,
        payload=form.to_dict(),
    )
    session = request_session()
    record(session, event)
    session.commit()
    return "", 204
