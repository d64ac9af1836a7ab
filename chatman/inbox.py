"""Provider events a webhook accepted and a worker has yet to apply: a Redis stream.

A webhook appends the event and answers at once (Twilio waits 15 s at most and a slow
answer holds a web thread). Workers read batches through a consumer group and acknowledge
only after their database commit, so events read by a worker that died are read again
(XAUTOCLAIM after `STALE_MS`), never lost. Applying is idempotent, so reading twice is safe.
An event that cannot be applied is moved to the stream's set-aside stream with the reason,
so it never holds up the others (`set_aside`).

The `:kick` key says a drain job is queued or running, so that a burst of callbacks
enqueues one job, not one per callback; the clock enqueues one too when events wait.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

STATUS = "chatman:inbox:status"
GROUP = "appliers"
# A drain acknowledges a batch within a second or two; one unacknowledged for this long was
# read by a drain that died, and another takes it over.
STALE_MS = 15_000
KICK_TTL_S = 30
# Set-aside events are kept for a person to look at, up to this many.
KEEP_SET_ASIDE = 10_000


@dataclass(frozen=True)
class Entry:
    id: str
    data: bytes  # the event as appended (JSON)
    message_id: str | None = None  # the ledger row its callback URL named

    def fields(self) -> dict[str, Any]:
        """The event's fields; ValueError when they are not a JSON object."""
        fields = json.loads(self.data)
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        return fields

    @property
    def accepted_ms(self) -> int:
        """When the webhook accepted it: a stream id starts with the Redis clock's milliseconds."""
        return int(self.id.split("-", 1)[0])


def append(connection: Redis, stream: str, fields: dict[str, Any], message_id: str | None = None) -> bool:
    """Add one event (and the ledger row its callback URL named, if any); True when no drain
    job is known to be coming (the caller starts one)."""
    entry = {"data": json.dumps(fields, separators=(",", ":"))}
    if message_id:
        entry["m"] = message_id
    pipe = connection.pipeline(transaction=False)
    pipe.xadd(stream, entry)
    pipe.set(f"{stream}:kick", 1, nx=True, ex=KICK_TTL_S)
    _, kicked = pipe.execute()
    return bool(kicked)


def read(connection: Redis, stream: str, consumer: str, count: int = 1000, wait_ms: int = 0) -> list[Entry]:
    """Up to `count` events for `consumer`: first any a dead consumer left unacknowledged.
    With `wait_ms`, a read that finds fewer than `count` waits that long for more, so that
    a trickle of events is applied in a few large transactions rather than many small ones."""
    _ensure_group(connection, stream)
    _, entries, _ = connection.xautoclaim(stream, GROUP, consumer, STALE_MS, start_id="0-0", count=count)
    if not entries:
        answer = connection.xreadgroup(GROUP, consumer, {stream: ">"}, count=count)
        entries = answer[0][1] if answer else []
        if wait_ms and len(entries) < count:
            time.sleep(wait_ms / 1000)
            more = connection.xreadgroup(GROUP, consumer, {stream: ">"}, count=count - len(entries))
            entries += more[0][1] if more else []
    return [
        Entry(
            entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            fields.get(b"data", b""),
            fields[b"m"].decode() if b"m" in fields else None,
        )
        for entry_id, fields in entries
        if fields  # an entry deleted after it was delivered comes back empty
    ]


def ack(connection: Redis, stream: str, ids: list[str]) -> None:
    """Done with these: acknowledge and delete, so the stream holds only unapplied events."""
    if ids:
        pipe = connection.pipeline(transaction=False)
        pipe.xack(stream, GROUP, *ids)
        pipe.xdel(stream, *ids)
        pipe.execute()


def set_aside(connection: Redis, stream: str, refused: list[tuple[Entry, str]]) -> None:
    """Move events that cannot be applied, each with why, out of the way of the others."""
    if not refused:
        return
    pipe = connection.pipeline(transaction=True)
    for entry, reason in refused:
        kept = {"data": entry.data, "reason": reason[:1000], "accepted_id": entry.id}
        if entry.message_id:
            kept["m"] = entry.message_id
        pipe.xadd(f"{stream}:set-aside", kept, maxlen=KEEP_SET_ASIDE, approximate=True)
    pipe.xack(stream, GROUP, *(entry.id for entry, _ in refused))
    pipe.xdel(stream, *(entry.id for entry, _ in refused))
    pipe.execute()


def retry_set_aside(connection: Redis, stream: str) -> int:
    """Put every set-aside event back in line (once what refused them is fixed); returns how
    many. One still refused is set aside again, with its reason."""
    aside = f"{stream}:set-aside"
    moved = 0
    while entries := connection.xrange(aside, count=500):
        pipe = connection.pipeline(transaction=True)
        for entry_id, fields in entries:
            again = {"data": fields[b"data"]}
            if b"m" in fields:
                again["m"] = fields[b"m"]
            pipe.xadd(stream, again)
            pipe.xdel(aside, entry_id)
        pipe.execute()
        moved += len(entries)
    return moved


def set_aside_entries(connection: Redis, stream: str, count: int = 100) -> list[dict[str, str]]:
    """The latest events set aside, newest first: what they held and why."""
    return [
        {"id": entry_id.decode(), **{k.decode(): v.decode(errors="replace") for k, v in fields.items()}}
        for entry_id, fields in connection.xrevrange(f"{stream}:set-aside", count=count)
    ]


def stop_kicking(connection: Redis, stream: str) -> None:
    connection.delete(f"{stream}:kick")


def backlog(connection: Redis, stream: str) -> int:
    """Events accepted and not yet applied (read or not)."""
    return connection.xlen(stream)


def oldest_age_s(connection: Redis, stream: str) -> float | None:
    """How long the oldest event not yet applied has waited; None when none waits."""
    head = connection.xrange(stream, count=1)
    if not head:
        return None
    entry_id = head[0][0].decode()
    now_s, now_us = connection.time()  # the clock the stream ids were taken from
    return round(max(0.0, now_s + now_us / 1e6 - int(entry_id.split("-", 1)[0]) / 1000), 3)


def set_aside_count(connection: Redis, stream: str) -> int:
    return connection.xlen(f"{stream}:set-aside")


def _ensure_group(connection: Redis, stream: str) -> None:
    try:
        connection.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
