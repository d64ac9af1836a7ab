"""The one door messages leave by: the provider interface the send pipeline knows.

Implementations: `twilio.TwilioProvider` (twilio-python) and `simulator.SimulatorProvider`
(no account; a simulated network that answers through our own webhooks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis import Redis

    from chatman.config import Settings

# Errors worth another try later; the rest fail the message for good.
RETRYABLE_CODES = frozenset({"20429", "63018", "130429"})
# The recipient opted out: the contact becomes DND.
OPT_OUT_CODES = frozenset({"21610", "63014"})


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


class Provider(Protocol):
    """What the send pipeline knows of a provider."""

    name: str
    # The WhatsApp sender messages leave from; rate limits are per sender.
    sender: str

    def send(self, message: OutboundMessage) -> SendResult:
        """Hand one message over; retryable failures are marked so, not raised."""
        ...

    def lookup(self, to: str, since: datetime) -> list[str]:
        """Sids of messages to `to` the provider accepted since `since`, newest first.

        Recovery uses it for a row that was handed over when its worker died: the provider
        has no idempotency key, so asking is the only way not to send twice.
        """
        ...


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
