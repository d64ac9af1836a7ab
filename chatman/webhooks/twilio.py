"""Twilio webhooks (the simulator speaks through them too). Every request must carry a valid
X-Twilio-Signature: 403 otherwise, and nothing is stored. A body over 64 KB is refused (413)
before it is read, so a junk request costs no parsing and no HMAC."""

from __future__ import annotations

import hmac
import logging
from functools import cache

from flask import Blueprint, abort, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from chatman import inbox
from chatman.errors import Invalid
from chatman.extensions import redis_client, request_session, settings
from chatman.jobs import enqueue_rules, enqueue_sends, enqueue_status_drain
from chatman.messaging.twilio_events import parse_inbound, parse_status
from chatman.rules.engine import messages_with_rules
from chatman.triggers.crud import trigger_index
from chatman.triggers.inbound import handle_inbound, inbound_policy

EMPTY_TWIML = str(MessagingResponse())  # "do nothing": our answers go out through the API
# Twilio's largest form (an inbound message with ten media) is a few KB.
MAX_BODY = 64 * 1024
# HMAC-SHA1 in base64: anything else cannot be a Twilio signature.
SIGNATURE_LENGTH = 28

bp = Blueprint("twilio_webhooks", __name__, url_prefix="/webhooks/twilio")
log = logging.getLogger(__name__)


def signed_urls() -> list[str]:
    """The URLs Twilio may have signed: PUBLIC_BASE_URL + path + query; and behind a proxy
    that TRUST_PROXY_HEADERS trusts, the URL it forwarded. Never the Host header alone: a
    request signed for another host must not pass by naming that host."""
    config = settings()
    query = request.query_string.decode()
    tail = request.path + (f"?{query}" if query else "")
    urls = [config.public_base_url + tail]
    if config.trust_proxy_headers:  # ProxyFix has put the forwarded scheme and host in place
        urls.append(request.root_url.rstrip("/") + tail)
    return list(dict.fromkeys(urls))


@bp.before_request
def verify_signature() -> None:
    if request.content_length is not None and request.content_length > MAX_BODY:
        abort(413)
    request.max_content_length = MAX_BODY  # a body without a length is cut off there too
    signature = request.headers.get("X-Twilio-Signature", "")
    if len(signature) != SIGNATURE_LENGTH:
        log.warning("rejected %s: bad or missing X-Twilio-Signature", request.path)
        abort(403)
    validator = _validator(settings().webhook_auth_token)
    urls = signed_urls()
    # The usual case costs one HMAC: the URL exactly as configured. validate() then tries
    # each URL with and without an explicit port, as Twilio's own signing varies.
    if hmac.compare_digest(validator.compute_signature(urls[0], request.form), signature):
        return
    if not any(validator.validate(url, request.form, signature) for url in urls):
        log.warning("rejected %s: bad or missing X-Twilio-Signature", request.path)
        abort(403)


@cache
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


@bp.post("/status")
def status():
    """Kept in the status inbox at once and applied by a worker (see chatman.inbox). A
    malformed callback is refused (400) and not kept: nothing downstream would take it."""
    form = request.form.to_dict()
    message_id = request.args.get("m")
    try:
        parse_status(form, message_id)
    except Invalid as error:
        log.warning("status callback refused: %s", error.message)
        abort(400, error.message)
    if inbox.append(redis_client(), inbox.STATUS, form, message_id=message_id):
        enqueue_status_drain(redis_client(), settings())
    return "", 204


@bp.post("/inbound")
def inbound():
    """A customer wrote: handled in this transaction (see triggers.inbound), answers sent by
    jobs after the commit; Twilio gets empty TwiML (no reply of its own)."""
    try:
        event = parse_inbound(request.form)
    except Invalid as error:
        log.warning("inbound message refused: %s", error.message)
        abort(400, error.message)
    session = request_session()
    try:
        handled = handle_inbound(session, event, inbound_policy(settings()), trigger_index(session))
    except Invalid as error:  # e.g. a From that is no phone number
        log.warning("inbound %s refused: %s", event.provider_sid, error.message)
        abort(400, error.message)
    session.commit()
    if handled is not None:
        enqueue_sends(redis_client(), handled.queued, handled.runs)
        if handled.reply_to is not None:  # replied, or tapped a button: its campaign's rules look
            enqueue_rules(redis_client(), messages_with_rules(session, ids=[handled.reply_to]))
    return EMPTY_TWIML, 200, {"Content-Type": "text/xml"}
