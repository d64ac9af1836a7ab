"""Twilio's webhook form fields turned into our events (the simulator speaks the same format)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from chatman.errors import Invalid
from chatman.ledger.status import StatusUpdate
from chatman.limits import MAX_ID, bad_character
from chatman.messaging.inbound import InboundEvent

# What a status callback may hold, checked before it is queued, so that what the database
# would refuse (over-long values, NUL) is refused here, the same way on every database.
SID = re.compile(r"^[A-Za-z0-9]{2,64}\Z")
STATUS = re.compile(r"^[a-z_]{1,24}\Z")
ERROR_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,16}\Z")


# Inbound fields: an identifier longer than its column cannot be one (refused, 400); a
# display text is cut to its column, as a long profile name is still the customer's name.
IDENTIFIERS = {"MessageSid": 64, "From": 64, "WaId": 32, "OriginalRepliedMessageSid": 64}
DISPLAY_TEXTS = {"ProfileName": 200, "ButtonText": 256, "ButtonPayload": 256, "MessageType": 24}
MAX_MEDIA = 10  # WhatsApp sends at most ten media with a message


def check_form(form: Mapping[str, Any]) -> None:
    """No key or value of a webhook's form may hold a NUL character or a lone surrogate (no
    database keeps one)."""
    items = form.items(multi=True) if hasattr(form, "getlist") else form.items()  # every value
    for key, value in items:
        reason = bad_character(key) or (bad_character(value) if isinstance(value, str) else None)
        if reason:
            raise Invalid(key.replace("\x00", "\\0"), reason)


def parse_status(form: Mapping[str, Any], message_id: Any = None) -> StatusUpdate:
    """A status callback as a StatusUpdate; Invalid when a field is missing or malformed.

    `message_id`: our ledger row, named in the StatusCallback URL we gave with the send.
    """
    check_form(form)
    sid, status, code = form.get("MessageSid"), form.get("MessageStatus"), form.get("ErrorCode") or None
    if not isinstance(sid, str) or not SID.match(sid):
        raise Invalid("MessageSid", "required: letters and digits, at most 64")
    if not isinstance(status, str) or not STATUS.match(status.lower()):
        raise Invalid("MessageStatus", "required: a status word (sent, delivered, ...), at most 24 letters")
    if code is not None and (not isinstance(code, str) or not ERROR_CODE.match(code)):
        raise Invalid("ErrorCode", "an error code of at most 16 letters and digits")
    message = form.get("ErrorMessage") or None
    if message is not None and not isinstance(message, str):
        raise Invalid("ErrorMessage", "must be text")
    return StatusUpdate(
        provider_sid=sid,
        status=status.lower(),
        error_code=code,
        error_message=message,
        payload=dict(form),
        message_id=parse_message_id(message_id),
    )


def parse_message_id(raw: Any) -> int | None:
    """Our row id from a StatusCallback URL's `m`, or None when it has none."""
    if raw is None or raw == "":
        return None
    text = str(raw)
    if not (text.isascii() and text.isdecimal()) or not 0 < int(text) <= MAX_ID:
        raise Invalid("m", "a message id: a positive whole number")
    return int(text)


def parse_inbound(form: Mapping[str, str]) -> InboundEvent:
    """An incoming WhatsApp message (Twilio's form fields); Invalid when MessageSid or From is
    missing, an identifier is longer than any real one, or NumMedia is not a count."""
    check_form(form)
    for field, longest in IDENTIFIERS.items():
        if len(form.get(field) or "") > longest:
            raise Invalid(field, f"at most {longest} characters")
    sid, sender = form.get("MessageSid"), form.get("From", "")
    if not sid or not sender:
        raise Invalid("MessageSid" if not sid else "From", "required")
    raw_media = form.get("NumMedia") or "0"
    if not (raw_media.isascii() and raw_media.isdecimal()) or int(raw_media) > MAX_MEDIA:
        raise Invalid("NumMedia", f"a count of media from 0 to {MAX_MEDIA}")
    media = int(raw_media)
    text = {field: (form.get(field) or "")[:longest] or None for field, longest in DISPLAY_TEXTS.items()}
    return InboundEvent(
        provider_sid=sid,
        phone=sender.removeprefix("whatsapp:"),
        wa_id=form.get("WaId") or None,
        profile_name=text["ProfileName"],
        body=form.get("Body") or None,
        message_type=text["MessageType"],
        button_text=text["ButtonText"],
        button_payload=text["ButtonPayload"],
        media_url=form.get("MediaUrl0") if media else None,
        media_type=((form.get("MediaContentType0") or "")[:128] or None) if media else None,
        latitude=_number(form.get("Latitude")),
        longitude=_number(form.get("Longitude")),
        location_label=form.get("Label") or form.get("Address") or None,
        replied_sid=form.get("OriginalRepliedMessageSid") or None,
        payload=dict(form),
    )


def _number(raw: str | None) -> float | None:
    """A coordinate, or None for one that is no finite number (both databases keep None alike)."""
    try:
        value = float(raw) if raw else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None
