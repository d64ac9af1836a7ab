"""The one door messages leave by: a small provider interface and its implementations."""

from __future__ import annotations

import json
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
