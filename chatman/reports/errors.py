"""What a provider's error code means, in a marketer's words, and the failures that get a
line of their own in a report."""

from __future__ import annotations

# Twilio (https://www.twilio.com/docs/api/errors/<code>) and Meta Cloud API codes.
MEANINGS = {
    "63016": "Outside the 24-hour window: only an approved template may start a conversation",
    "63018": "Rate limit: the sender's messaging limit or the account's speed was exceeded",
    "63024": "Not a valid WhatsApp recipient (no WhatsApp, terms not accepted, or an old app)",
    "63032": "The recipient is in a Meta marketing experiment: marketing templates do not reach them",
    "63049": "Limited by Meta: Meta chose not to deliver this marketing message",
    "63014": "Blocked by the recipient (they blocked the sender or opted out)",
    "63021": "Invalid content (media type, or a template over 1,024 characters)",
    "63062": "Marketing Messages API terms not accepted",
    "21610": "The recipient unsubscribed",
    "30008": "Unknown error at the carrier",
    "30036": "Expired while queued",
    "131047": "Outside the 24-hour window: more than 24 hours since the customer's last message",
    "131049": "Limited by Meta: the customer's marketing-message limit (a healthy ecosystem)",
    "131050": "The customer stopped marketing messages",
    "131026": "Undeliverable",
    "131048": "Spam rate limit reached",
    "131056": "Too many messages to this customer in a short time",
    "130429": "Throughput limit reached",
    "130472": "The recipient is in a Meta marketing experiment",
    "unknown": "The provider gave no reason",
}
# Failures a marketer acts on differently: each has its own line beside the codes.
GROUPS = {
    "limited_by_meta": frozenset({"63049", "131049"}),
    "outside_window": frozenset({"63016", "131047"}),
}


def meaning(code: str) -> str:
    return MEANINGS.get(code, "See the provider's documentation for this code")


def group_of(code: str) -> str:
    for group, codes in GROUPS.items():
        if code in codes:
            return group
    return "other"
