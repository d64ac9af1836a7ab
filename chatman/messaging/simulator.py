"""A provider with no account: a simulated WhatsApp network.

It accepts every send and records it in Redis (`chatman:simulator:sent`, one JSON line per
send), which tests and the demo read to see what a real provider would have received. For
each send it plans the status callbacks a real network would make (sent, then delivered or
undelivered, then read for some), with delays, the odd duplicate and the odd pair out of
order, and a worker job posts them, signed as Twilio signs them, to the message's status
callback URL: our own webhook. So the whole loop runs and can be shown with no account.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import requests
from redis import Redis
from sqlalchemy import select
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from chatman.config import Settings
from chatman.config import SimulatorSettings as NetworkSettings
from chatman.contacts.fields import normalise_phone
from chatman.contacts.models import Contact
from chatman.errors import DomainError, Invalid
from chatman.ledger.models import Message
from chatman.messaging.models import InboundMessage, Template
from chatman.messaging.providers import OutboundMessage, ProviderMessage, SendResult

log = logging.getLogger(__name__)

SENT_KEY = "chatman:simulator:sent"
CALLBACKS_KEY = "chatman:simulator:callbacks"
# The record of sends is for looking at, not an archive: older entries fall off.
KEEP_SENT = 200_000
ACCOUNT_SID = "AC" + "0" * 32
SENDER = "whatsapp:+15005550006"
FAILURES = [
    ("63024", "Invalid message recipient"),
    ("63049", "Meta chose not to deliver this WhatsApp marketing message"),
    ("30008", "Unknown error"),
]
RETRY_POST_S = 5.0
# A callback the webhook cannot take is tried this many times (5 s, 10 s, 20 s, 40 s apart),
# then dropped and counted, so a wrong PUBLIC_BASE_URL shows in /healthz instead of looping.
MAX_POST_ATTEMPTS = 5
UNDELIVERED_KEY = "chatman:simulator:undelivered"
LAST_ERROR_KEY = "chatman:simulator:last-error"


def plan_callbacks(
    sid: str, to: str, network: NetworkSettings, rng: random.Random, now: float
) -> list[tuple[float, dict[str, str]]]:
    """The callbacks a real network would make for one message: (due unix time, form)."""
    d = network.delay_s
    sent_at = now + d * rng.uniform(0.5, 1.5)
    events: list[tuple[float, str, tuple[str, str] | None]] = [(sent_at, "sent", None)]
    if rng.random() < network.failure_rate:
        events.append((sent_at + d * rng.uniform(0.5, 1.5), "undelivered", rng.choice(FAILURES)))
    else:
        delivered_at = sent_at + d * rng.uniform(0.5, 1.5)
        events.append((delivered_at, "delivered", None))
        if rng.random() < network.read_rate:
            events.append((delivered_at + d * rng.uniform(1, 10), "read", None))
    if rng.random() < network.disorder_rate:  # the second callback overtakes the first
        (t0, s0, e0), (t1, s1, e1) = events[0], events[1]
        events[0], events[1] = (t1, s0, e0), (t0, s1, e1)
    events += [
        (t + d * rng.uniform(0, 2), s, e) for t, s, e in events if rng.random() < network.duplicate_rate
    ]
    plan = []
    for due, status, error in events:
        form = {
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": ACCOUNT_SID,
            "From": SENDER,
            "To": f"whatsapp:{to}",
            "ChannelToAddress": to,
            "ChannelPrefix": "whatsapp",
            "ApiVersion": "2010-04-01",
        }
        if error:
            form["ErrorCode"], form["ErrorMessage"] = error
        plan.append((due, form))
    return plan


class SimulatorProvider:
    name = "simulator"
    sender = SENDER

    def __init__(
        self, connection: Redis, network: NetworkSettings | None = None, rng: random.Random | None = None
    ) -> None:
        self.redis = connection
        self.network = network or NetworkSettings()
        self.rng = rng or random.Random()

    def send(self, message: OutboundMessage) -> SendResult:
        sid = "SM" + uuid.uuid4().hex
        now = time.time()
        record = {
            "sid": sid,
            "to": message.to,
            "body": message.body,
            "content_sid": message.content_sid,
            "content_variables": message.content_variables,
            "at": now,
        }
        pipe = self.redis.pipeline(transaction=False)
        pipe.rpush(SENT_KEY, json.dumps(record))
        pipe.ltrim(SENT_KEY, -KEEP_SENT, -1)
        if message.status_callback and self.network.callbacks:
            for copy, (due, form) in enumerate(plan_callbacks(sid, message.to, self.network, self.rng, now)):
                entry = {"url": message.status_callback, "form": form, "copy": copy}
                pipe.zadd(CALLBACKS_KEY, {json.dumps(entry): due})
        pipe.execute()
        return SendResult(sid=sid)

    def lookup(self, to: str, since: datetime) -> list[ProviderMessage]:
        cutoff = since.timestamp()
        found = []
        for raw in self.redis.lrange(SENT_KEY, 0, -1):
            record = json.loads(raw)
            if record["to"] == to and record.get("at", 0) >= cutoff:
                created = datetime.fromtimestamp(record["at"], UTC)
                found.append(ProviderMessage(record["sid"], created, record.get("body")))
        return found[::-1]

    def sent(self) -> list[dict]:
        return [json.loads(raw) for raw in self.redis.lrange(SENT_KEY, 0, -1)]


def pending_callbacks(connection: Redis) -> int:
    return connection.zcard(CALLBACKS_KEY)


def post_due_callbacks(
    connection: Redis, signing_key: str, now: float | None = None, limit: int = 1000, threads: int = 8
) -> tuple[int, float | None]:
    """Post the callbacks that are due, signed; returns (posted, unix time the next is due).

    Each callback is taken with ZREM first, so concurrent posters never post one twice; one
    the webhook could not take (5xx, no answer) goes back for a later try.
    """
    now = time.time() if now is None else now
    due = connection.zrangebyscore(CALLBACKS_KEY, "-inf", now, start=0, num=limit)
    pipe = connection.pipeline(transaction=False)
    for member in due:
        pipe.zrem(CALLBACKS_KEY, member)
    mine = [member for member, removed in zip(due, pipe.execute(), strict=True) if removed]
    validator = RequestValidator(signing_key)
    http = requests.Session()

    def post(member: bytes) -> bool:
        entry = json.loads(member)
        url, form = entry["url"], entry["form"]
        headers = {"X-Twilio-Signature": validator.compute_signature(url, form)}
        try:
            answer = http.post(url, data=form, headers=headers, timeout=10)
        except requests.RequestException as exc:
            return retry_or_drop(entry, f"{url} did not answer ({exc.__class__.__name__})")
        if answer.status_code >= 500:
            return retry_or_drop(entry, f"{url} answered HTTP {answer.status_code}")
        if answer.status_code >= 400:  # a wrong PUBLIC_BASE_URL or key: retrying cannot help
            return drop(f"{url} refused it with HTTP {answer.status_code}")
        return True

    def retry_or_drop(entry: dict, why: str) -> bool:
        attempts = entry.get("attempts", 1)
        if attempts >= MAX_POST_ATTEMPTS:
            return drop(f"{why}, {attempts} times")
        log.warning("simulated callback not delivered, trying again: %s", why)
        again = json.dumps(entry | {"attempts": attempts + 1})
        connection.zadd(CALLBACKS_KEY, {again: now + RETRY_POST_S * 2 ** (attempts - 1)})
        return False

    def drop(why: str) -> bool:
        log.error("simulated status callback dropped: %s (is PUBLIC_BASE_URL this server?)", why)
        pipe = connection.pipeline()
        pipe.incr(UNDELIVERED_KEY).set(LAST_ERROR_KEY, why).execute()
        return False

    with ThreadPoolExecutor(threads) as pool:
        posted = sum(pool.map(post, mine))
    http.close()
    return posted, next_due(connection)


def undelivered(connection: Redis) -> tuple[int, str | None]:
    """How many simulated callbacks were dropped undelivered, and the last one's reason."""
    count, why = connection.mget(UNDELIVERED_KEY, LAST_ERROR_KEY)
    return int(count or 0), why.decode() if why else None


def next_due(connection: Redis) -> float | None:
    """When the earliest waiting callback is due (unix time), or None when none waits."""
    head = connection.zrange(CALLBACKS_KEY, 0, 0, withscores=True)
    return head[0][1] if head else None


def customer_says(
    webhook_url: str,
    signing_key: str,
    phone: str,
    body: str | None = None,
    button_payload: str | None = None,
    button_text: str | None = None,
    replied_sid: str | None = None,
    profile_name: str | None = None,
) -> tuple[str, int]:
    """A simulated customer writes to the business: Twilio's inbound form, signed, posted to
    our inbound webhook. Returns (the message sid, the webhook's HTTP status)."""
    sid = "SM" + uuid.uuid4().hex
    form = {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": f"whatsapp:{phone}",
        "To": SENDER,
        "Body": body or button_text or "",
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
        "WaId": phone.lstrip("+"),
        "MessageType": "button" if button_payload else "text",
    }
    optional = {
        "ProfileName": profile_name,
        "ButtonPayload": button_payload,
        "ButtonText": button_text,
        "OriginalRepliedMessageSid": replied_sid,
    }
    form |= {k: v for k, v in optional.items() if v}
    signature = RequestValidator(signing_key).compute_signature(webhook_url, form)
    answer = requests.post(webhook_url, data=form, headers={"X-Twilio-Signature": signature}, timeout=15)
    return sid, answer.status_code


def sent_to(connection: Redis, phone: str) -> list[dict]:
    """What the simulated network delivered to one phone, oldest first."""
    return [record for record in SimulatorProvider(connection).sent() if record["to"] == phone]


class NotReceived(DomainError):
    """Our own inbound webhook did not take a simulated customer's message."""


def off_because(config: Settings) -> str | None:
    """Why the simulator cannot be used (Twilio is the provider), or None when it can."""
    if config.twilio_account_sid and config.twilio_auth_token:
        return "Twilio is the provider (TWILIO_* are set): the simulator is off"
    return None


def say(
    config: Settings,
    phone: str,
    body: str | None = None,
    button_payload: str | None = None,
    button_text: str | None = None,
    replied_sid: str | None = None,
    profile_name: str | None = None,
) -> tuple[str, str]:
    """A simulated customer writes (text, or a button tap) through the real signed inbound
    webhook at PUBLIC_BASE_URL; returns (their phone in E.164, the message sid). Invalid when
    there is nothing to say or no phone; NotReceived when the webhook did not take it."""
    if not (body or button_payload):
        raise Invalid("body", "say something: body or button_payload")
    phone = normalise_phone(phone, config.default_region)
    url = config.public_base_url + "/webhooks/twilio/inbound"
    try:
        sid, status = customer_says(
            url,
            config.webhook_auth_token,
            phone,
            body=body,
            button_payload=button_payload,
            button_text=button_text,
            replied_sid=replied_sid,
            profile_name=profile_name,
        )
    except OSError as error:  # requests' errors are OSErrors
        raise NotReceived(
            f"nobody answers at {url} ({error.__class__.__name__}); is PUBLIC_BASE_URL this server?"
        ) from None
    if status != 200:
        raise NotReceived(
            f"the inbound webhook at {url} answered HTTP {status}; the message was not received"
        )
    return phone, sid


def conversation(session: Session, connection: Redis, phone: str) -> list[dict]:
    """The conversation with one phone (E.164) as its screen shows it, oldest first: what the
    customer wrote, and what the simulated network delivered to them, with the ledger status
    of each and the buttons of the template it was (by its content sid) to tap."""
    received = session.execute(
        select(InboundMessage.body, InboundMessage.button_text, InboundMessage.received_at)
        .join(Contact, Contact.id == InboundMessage.contact_id)
        .where(Contact.phone == phone)
    ).all()
    messages = [
        {"from": "customer", "text": r.body or r.button_text, "at": r.received_at.timestamp()}
        for r in received
    ]
    delivered = sent_to(connection, phone)
    sids = [s["sid"] for s in delivered]
    contents = {s["content_sid"] for s in delivered if s.get("content_sid")}
    ours = {
        r.provider_sid: r
        for r in session.execute(
            select(Message.provider_sid, Message.status, Message.content).where(
                Message.provider_sid.in_(sids)
            )
        )
    }
    buttons = dict(
        session.execute(
            select(Template.content_sid, Template.buttons).where(Template.content_sid.in_(contents))
        ).all()
    )
    messages += [
        {
            "from": "business",
            # A template sent by its content sid: the text the provider rendered, as we did.
            "text": s["body"] if s["body"] is not None else _rendered(ours.get(s["sid"])),
            "content_sid": s["content_sid"],
            "sid": s["sid"],
            "status": ours[s["sid"]].status if s["sid"] in ours else None,
            "buttons": quick_replies(buttons.get(s["content_sid"]) or []),
            "at": s.get("at", 0),
        }
        for s in delivered
    ]
    return sorted(messages, key=lambda m: m["at"])


def _rendered(row) -> str | None:
    return (row.content or {}).get("body") if row is not None else None


def quick_replies(buttons: list) -> list[dict[str, str]]:
    """A template's buttons as what a tap sends: {"payload", "text"}."""
    replies = []
    for button in buttons:
        if not isinstance(button, dict):
            continue
        text = button.get("text") or button.get("title") or button.get("payload") or button.get("id")
        payload = button.get("payload") or button.get("id") or text
        if text:
            replies.append({"payload": str(payload), "text": str(text)})
    return replies
