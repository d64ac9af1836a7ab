"""Helpers of tests that drive the clock through simulated days (see the `drive` fixture)."""

from __future__ import annotations

from collections import defaultdict

from chatman.contacts import segments
from chatman.messaging.templates import save_template


def sent(stub) -> dict[str, list[str]]:
    """What each phone was sent, in order, as the provider received it."""
    got: dict[str, list[str]] = defaultdict(list)
    for record in stub.messages(full=True)["messages"]:
        got[record["to"].removeprefix("whatsapp:")].append(record["body"])
    return dict(got)


def templates(session, *names: str, category: str = "utility") -> list[int]:
    """Approved templates whose body is their name."""
    return [
        save_template(
            session, {"name": n, "language": "en", "category": category, "status": "approved", "body": n}
        ).id
        for n in names
    ]


def everyone(session):
    """A dynamic segment every contact is in."""
    segment = segments.create_segment(
        session,
        {
            "name": "everyone",
            "kind": "dynamic",
            "rules": {"all": [{"field": "phone", "op": "starts_with", "value": "+"}]},
        },
    )
    session.commit()
    return segment
