"""Message states and the order they move in.

pending -> claimed -> submitted -> sent -> delivered -> read, or failed / skipped, or
unconfirmed (handed to the provider, which could not tell whether it got it: never sent
again; a callback naming it still ties it to its sid), or held (claimed outside its
campaign's send window: back to pending when the window opens). Provider callbacks only move a message
forward: read beats delivered beats failed beats sent.
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
UNCONFIRMED = "unconfirmed"
HELD = "held"

STATES = (PENDING, CLAIMED, SUBMITTED, SENT, DELIVERED, READ, FAILED, SKIPPED, UNCONFIRMED, HELD)
# Not decided yet: a run with rows in these states is not over.
UNDECIDED = (PENDING, CLAIMED, HELD)

# Rank of a provider-reported status. Failure ranks above sent (Twilio handed the message on,
# then WhatsApp could not deliver it: "undelivered" after "sent" is the truth) and below
# delivered (a later delivered or read proves the failure report wrong).
RANK = {PENDING: 0, CLAIMED: 1, SUBMITTED: 2, SENT: 3, FAILED: 4, DELIVERED: 5, READ: 6}

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
