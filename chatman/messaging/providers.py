"""The one door messages leave by: the provider interface the send pipeline knows.

Implementations: `twilio.TwilioProvider` (twilio-python) and `simulator.SimulatorProvider`
(no account; a simulated network that answers through our own webhooks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis import Redis

    from chatman.config import Settings
    from chatman.ledger.sending import Lease

# How far a provider's clock and ours may disagree.
CLOCK_SKEW = timedelta(minutes=2)
# Errors worth another try later; the rest fail the message for good.
RETRYABLE_CODES = frozenset({"20429", "63018", "130429"})
# The recipient opted out: the contact becomes DND.
OPT_OUT_CODES = frozenset({"21610", "63014"})
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutboundMessage:
    to: str  # E.164
    body: str | None = None
    content_sid: str | None = None
    content_variables: dict[str, str] | None = None
    status_callback: str | None = None


@dataclass(frozen=True)
class SendResult:
    sid: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    retryable: bool = False
    # The request may have reached the provider (no answer came back): sending again could
    # send twice, so the pipeline asks the provider later (`lookup`) instead.
    ambiguous: bool = False

    @property
    def ok(self) -> bool:
        return self.sid is not None


@dataclass(frozen=True)
class ProviderMessage:
    """A message the provider says it accepted, as a lookup lists it."""

    sid: str
    created_at: datetime | None = None
    body: str | None = None  # what it says, where the provider shows it


class Provider(Protocol):
    """What the send pipeline knows of a provider."""

    name: str
    # The WhatsApp sender messages leave from; rate limits are per sender.
    sender: str

    def send(self, message: OutboundMessage) -> SendResult:
        """Hand one message over; retryable failures are marked so, not raised."""
        ...

    def lookup(self, to: str, since: datetime) -> list[ProviderMessage]:
        """Messages to `to` the provider accepted since `since`, newest first.

        Recovery uses it for a row that was handed over when its worker died: the provider
        has no idempotency key, so asking is the only way not to send twice.
        """
        ...


def status_callback_for(url: str | None, message_id: int) -> str | None:
    """The StatusCallback URL of one message: ours, naming the row, so that its first status
    callback ties the provider's sid to the row even when the send's own answer was lost. The
    provider signs the whole URL, so the row id cannot be forged."""
    return f"{url}?m={message_id}" if url else None


# What a send that did not start says: it may be tried again.
NOT_SENT = SendResult(
    error_code="lease_lost", error_message="not sent: the claim's lease could not be renewed", retryable=True
)


def send_safely(provider: Provider, message: OutboundMessage, lease: Lease | None = None) -> SendResult:
    """`provider.send`, with any exception its adapter did not foresee made this message's
    result, so it never takes the answers of the rest of a group with it. The request may have
    reached the provider: the row is looked up there later, never sent again blind. With a
    `lease` that is no longer fresh, nothing is sent (someone may be taking the row over)."""
    if lease is not None and not lease.fresh():
        return NOT_SENT
    try:
        return provider.send(message)
    except Exception as exc:  # noqa: BLE001 (whatever it is, it is this one message's outcome)
        log.exception("sending to %s failed unexpectedly", message.to)
        return SendResult(
            error_code="exception", error_message=f"{type(exc).__name__}: {exc}"[:500], ambiguous=True
        )


def make_provider(settings: Settings, connection: Redis) -> Provider:
    """Twilio when its credentials are set, else the simulator."""
    if settings.twilio_account_sid and settings.twilio_auth_token:
        from chatman.messaging.twilio import TwilioProvider

        return TwilioProvider(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            from_=settings.twilio_whatsapp_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            base_url=settings.twilio_api_base_url,
            pool_size=settings.send_concurrency,
        )
    from chatman.messaging.simulator import SimulatorProvider

    return SimulatorProvider(connection, settings.simulator)
