"""Provider events a webhook accepted and a worker has yet to apply: a Redis stream.

A webhook appends the event and answers at once (Twilio waits 15 s at most and a slow
answer holds a web thread). Workers read batches through a consumer group and acknowledge
only after their database commit, so events read by a worker that died are read again
(XAUTOCLAIM after `STALE_MS`), never lost. Applying is idempotent, so reading twice is safe.

The `:kick` key says a drain job is queued or running, so that a burst of callbacks
enqueues one job, not one per callback; the clock enqueues one too when events wait.
"""

from __future__ import annotations

import json
import time
from typing import Any

from redis import Redis
from redis.exceptions import ResponseError

STATUS = "chatman:inbox:status"
GROUP = "appliers"
STALE_MS = 60_000
KICK_TTL_S = 30


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


def read(
    connection: Redis, stream: str, consumer: str, count: int = 1000, wait_ms: int = 0
) -> list[tuple[str, dict]]:
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
        (entry_id.decode() if isinstance(entry_id, bytes) else entry_id, json.loads(fields[b"data"]))
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


def stop_kicking(connection: Redis, stream: str) -> None:
    connection.delete(f"{stream}:kick")


def backlog(connection: Redis, stream: str) -> int:
    """Events accepted and not yet applied (read or not)."""
    return connection.xlen(stream)


def _ensure_group(connection: Redis, stream: str) -> None:
    try:
        connection.xgroup_create(stream, GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
