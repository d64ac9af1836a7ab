"""The one door messages leave by: a small provider interface and its implementations."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

from redis import Redis

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

    @property
    def ok(self) -> bool:
        return self.sid is not None


class Provider(Protocol):
    """What the send pipeline knows of a provider."""

    name: str

    def send(self, message: OutboundMessage) -> SendResult: ...


class SimulatorProvider:
    """A provider with no account: accepts every send and records it in Redis.

    The record (`chatman:simulator:sent`, one JSON line per send) is the simulated network,
    which tests and the demo read to see what a real provider would have received.
    """

    name = "simulator"
    SENT_KEY = "chatman:simulator:sent"

    def __init__(self, connection: Redis) -> None:
        self.redis = connection

    def send(self, message: OutboundMessage) -> SendResult:
        sid = "SM" + uuid.uuid4().hex
        record = {
            "sid": sid,
            "to": message.to,
            "body": message.body,
            "content_sid": message.content_sid,
            "content_variables": message.content_variables,
        }
        self.redis.rpush(self.SENT_KEY, json.dumps(record))
        return SendResult(sid=sid)

    def sent(self) -> list[dict]:
        return [json.loads(raw) for raw in self.redis.lrange(self.SENT_KEY, 0, -1)]


class TwilioProvider:
    """Twilio's Messages API through twilio-python, with keep-alive and explicit timeouts.

    Retryable failures (HTTP 429 and 5xx, codes 20429/63018, timeouts and refused
    connections) are retried here with backoff a bounded number of times; what is still
    failing after that is reported retryable, so the pipeline can try again later.
    """

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_: str | None = None,
        messaging_service_sid: str | None = None,
        base_url: str = "https://api.twilio.com",
        timeout: float = 10.0,
        retries: int = 2,
        backoff_s: float = 0.5,
    ) -> None:
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        if not (from_ or messaging_service_sid):
            raise ValueError("a Twilio sender needs TWILIO_WHATSAPP_FROM or TWILIO_MESSAGING_SERVICE_SID")
        # TwilioHttpClient keeps one requests.Session (keep-alive); its default timeout is none.
        self.client = Client(account_sid, auth_token, http_client=TwilioHttpClient(timeout=timeout))
        self.client.api.base_url = base_url
        self.from_ = from_ if from_ is None or from_.startswith("whatsapp:") else f"whatsapp:{from_}"
        self.messaging_service_sid = messaging_service_sid
        self.retries = retries
        self.backoff_s = backoff_s

    def _params(self, message: OutboundMessage) -> dict:
        params: dict = {"to": f"whatsapp:{message.to}"}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        else:
            params["from_"] = self.from_
        if message.content_sid:
            params["content_sid"] = message.content_sid
            params["content_variables"] = json.dumps(message.content_variables or {})
        else:
            params["body"] = message.body
        if message.status_callback:
            params["status_callback"] = message.status_callback
        return params

    def send(self, message: OutboundMessage) -> SendResult:
        import requests
        from twilio.base.exceptions import TwilioRestException

        params = self._params(message)
        result = SendResult(error_code="unknown")
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                return SendResult(sid=self.client.messages.create(**params).sid)
            except TwilioRestException as exc:
                code = str(exc.code or exc.status)
                retryable = exc.status == 429 or exc.status >= 500 or code in RETRYABLE_CODES
                result = SendResult(error_code=code, error_message=exc.msg, retryable=retryable)
            except (requests.Timeout, requests.ConnectionError) as exc:
                result = SendResult(
                    error_code="timeout" if isinstance(exc, requests.Timeout) else "connection",
                    error_message=str(exc),
                    retryable=True,
                )
            if not result.retryable:
                return result
        return result
