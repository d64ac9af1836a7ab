"""Message states and the order they move in.

pending -> claimed -> submitted -> sent -> delivered -> read, or failed / skipped. Provider
callbacks only move a message forward: read beats delivered beats sent, and a late
"delivered" after "failed" proves the message arrived.
"""

from __future__ import annotations

PENDING = "pending"
CLAIMED = "claimed"
SUBMITTED = "submitted"
SENT = "sent"
DELIVERED = "delivered"
READ = "read"
FAILED = "failed"
SKIPPED = "skipped"

STATES = (PENDING, CLAIMED, SUBMITTED, SENT, DELIVERED, READ, FAILED, SKIPPED)
# Past the send: nothing more will be attempted for these rows.
SETTLED = frozenset({SENT, DELIVERED, READ, FAILED, SKIPPED})

# Rank of a provider-reported status. Failure ranks between submitted and sent: a message
# that failed can still be proven delivered by a later callback, never the other way round.
RANK = {PENDING: 0, CLAIMED: 1, SUBMITTED: 2, FAILED: 3, SENT: 4, DELIVERED: 5, READ: 6}

# Twilio's MessageStatus values mapped onto ledger states (None: informational only).
PROVIDER_STATUS = {
    "accepted": None,
    "scheduled": None,
    "queued": None,
    "sending": None,
    "sent": SENT,
    "delivered": DELIVERED,
    "read": READ,
    "failed": FAILED,
    "undelivered": FAILED,
    "canceled": FAILED,
    "partially_delivered": DELIVERED,
}


def moves_forward(current: str, new: str) -> bool:
    """May a message in `current` take the provider-reported state `new`?"""
    if current == SKIPPED or new not in RANK or current not in RANK:
        return False
    return RANK[new] > RANK[current]
