"""Twilio's Messages API through twilio-python, with keep-alive and explicit timeouts."""

from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.connection import HTTPConnection
from urllib3.exceptions import NameResolutionError, NewConnectionError

from chatman.messaging.providers import (
    CLOCK_SKEW,
    RETRYABLE_CODES,
    OutboundMessage,
    ProviderMessage,
    SendResult,
)

# A worker keeps its connections to Twilio between jobs, idle for minutes at night. A NAT or
# firewall may forget an idle connection without telling either end; the next send on it would
# hang until the read timeout and then wait for a lookup. Probes every 30 s of idleness keep
# the path open, and a dead connection is found and dropped before it is reused.
KEEPALIVE_OPTIONS = [
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1),
    *(
        (socket.IPPROTO_TCP, getattr(socket, name), value)
        for name, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3))
        if hasattr(socket, name)  # Linux names; other systems keep their defaults
    ),
]


class _KeepAliveAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["socket_options"] = [*HTTPConnection.default_socket_options, *KEEPALIVE_OPTIONS]
        super().init_poolmanager(*args, **kwargs)


class TwilioProvider:
    """Retryable failures (HTTP 429 and 5xx, codes 20429/63018, timeouts and refused
    connections) are retried here with backoff a bounded number of times; what is still
    failing after that is reported retryable, so the pipeline can try again later.
    One instance is shared by the sending threads of a batch.
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
        pool_size: int = 32,
    ) -> None:
        if not (from_ or messaging_service_sid):
            raise ValueError("a Twilio sender needs TWILIO_WHATSAPP_FROM or TWILIO_MESSAGING_SERVICE_SID")
        # TwilioHttpClient keeps one requests.Session (keep-alive); its default timeout is none,
        # and its pool (cpu count + 4) is smaller than the threads that share it.
        # requests reads proxies (and no_proxy) from the environment on every request, a fifth
        # of a send's time: read once here instead.
        http = TwilioHttpClient(timeout=timeout, proxy=get_environ_proxies(base_url))
        http.session.trust_env = False
        http.session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        for scheme in ("https://", "http://"):
            http.session.mount(scheme, _KeepAliveAdapter(pool_connections=1, pool_maxsize=pool_size))
        self.client = Client(account_sid, auth_token, http_client=http)
        self.client.api.base_url = base_url
        self.from_ = from_ if from_ is None or from_.startswith("whatsapp:") else f"whatsapp:{from_}"
        self.messaging_service_sid = messaging_service_sid
        self.sender = messaging_service_sid or self.from_
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
            except (requests.ConnectTimeout, requests.ConnectionError) as exc:
                if not _never_sent(exc):
                    return SendResult(error_code="connection", error_message=str(exc), ambiguous=True)
                code = "timeout" if isinstance(exc, requests.ConnectTimeout) else "connection"
                result = SendResult(error_code=code, error_message=str(exc), retryable=True)
            except requests.Timeout as exc:  # sent, and no answer in time: Twilio may have it
                return SendResult(error_code="timeout", error_message=str(exc), ambiguous=True)
            if not result.retryable:
                return result
        return result

    def lookup(self, to: str, since: datetime) -> list[ProviderMessage]:
        """Messages to `to` created since `since` (less CLOCK_SKEW). No date filter on the
        request: Twilio's only one is DateSent, which a message still queued does not have yet."""
        since = since - CLOCK_SKEW
        found = self.client.messages.list(to=f"whatsapp:{to}", limit=50)
        return [
            ProviderMessage(m.sid, m.date_created, m.body or None)
            for m in found
            if m.direction == "outbound-api" and (m.date_created is None or m.date_created >= since)
        ]


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached Twilio (no connection was made), so trying
    again cannot send twice. A connection dropped mid-request is not such a case."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, NewConnectionError | NameResolutionError)
