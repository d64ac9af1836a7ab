"""Outgoing webhooks (a CRM push): endpoints a marketer registers, deliveries that rules queue,
signed the Standard Webhooks way and retried on its schedule by workers.

- `endpoints`: the endpoints (name, url, enabled, secret) and the deliveries' audit;
- `deliveries`: queueing (`queue_delivery`), the schedule, claims and verdicts;
- `sending`: claim, sign, POST, record (what the jobs call);
- `transport`: HTTP with a short timeout that connects only to public addresses;
- `addresses`: which URLs and addresses a webhook may go to; `signing`: the spec's parts.
"""

from chatman.outgoing.deliveries import EndpointUnavailable, queue_delivery

__all__ = ["EndpointUnavailable", "queue_delivery"]
