"""Twilio's webhook form fields turned into our events (the simulator speaks the same format)."""

from __future__ import annotations

from collections.abc import Mapping

from chatman.ledger.status import StatusUpdate
from chatman.messaging.inbound import InboundEvent


def parse_status(form: Mapping[str, str]) -> StatusUpdate | None:
    """A status callback as a StatusUpdate; None when it lacks MessageSid or MessageStatus."""
    sid, status = form.get("MessageSid"), form.get("MessageStatus")
    if not sid or not status:
        return None
    return StatusUpdate(
        provider_sid=sid,
        status=status.lower(),
        error_code=form.get("ErrorCode") or None,
        error_message=form.get("ErrorMessage") or None,
        payload=dict(form),
    )


def parse_inbound(form: Mapping[str, str]) -> InboundEvent | None:
    """An incoming WhatsApp message (Twilio's form fields); None without MessageSid or From."""
    sid, sender = form.get("MessageSid"), form.get("From", "")
    if not sid or not sender:
        return None
    media = int(form.get("NumMedia") or 0)
    return InboundEvent(
        provider_sid=sid,
        phone=sender.removeprefix("whatsapp:"),
        wa_id=form.get("WaId") or None,
        profile_name=form.get("ProfileName") or None,
        body=form.get("Body") or None,
        message_type=form.get("MessageType") or None,
        button_text=form.get("ButtonText") or None,
        button_payload=form.get("ButtonPayload") or None,
        media_url=form.get("MediaUrl0") if media else None,
        media_type=form.get("MediaContentType0") if media else None,
        latitude=_number(form.get("Latitude")),
        longitude=_number(form.get("Longitude")),
        location_label=form.get("Label") or form.get("Address") or None,
        replied_sid=form.get("OriginalRepliedMessageSid") or None,
        payload=dict(form),
    )


def _number(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None
