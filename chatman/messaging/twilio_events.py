"""Twilio's webhook form fields turned into our events (the simulator speaks the same format)."""

from __future__ import annotations

from collections.abc import Mapping

from chatman.ledger.status import StatusUpdate


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
