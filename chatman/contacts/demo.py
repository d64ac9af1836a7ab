"""Demo contacts, attributes and segments, so a fresh install has something to look at."""

from __future__ import annotations

import random
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from chatman.contacts import segments
from chatman.contacts.attributes import define_attribute
from chatman.contacts.models import Contact
from chatman.timeutils import utcnow

FIRST = ["Aarav", "Diya", "Ishaan", "Ananya", "Kabir", "Meera", "Rohan", "Saanvi", "Vivaan", "Zara"]
LAST = ["Sharma", "Patel", "Iyer", "Khan", "Reddy", "Gupta", "Das", "Nair", "Singh", "Mehta"]
CITIES = ["Mumbai", "Pune", "Delhi", "Bengaluru", "Chennai", "Kolkata"]
PLANS = ["free", "basic", "pro"]


def seed_demo(session: Session, only_if_empty: bool = True, count: int = 60, seed: int = 7) -> int:
    if only_if_empty and session.scalar(select(func.count()).select_from(Contact)):
        return 0
    rng = random.Random(seed)
    now = utcnow()
    for name, type_ in (
        ("city", "string"),
        ("plan", "string"),
        ("orders", "number"),
        ("vip", "boolean"),
        ("birthday", "date"),
    ):
        define_attribute(session, name, type_)
    created = 0
    for i in range(count):
        phone = f"+9198{rng.randrange(10**7, 10**8)}"
        if session.scalar(select(Contact.id).where(Contact.phone == phone)):
            continue
        session.add(
            Contact(
                phone=phone,
                name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                timezone="Asia/Kolkata",
                attributes={
                    "city": rng.choice(CITIES),
                    "plan": rng.choice(PLANS),
                    "orders": rng.randrange(0, 30),
                    "vip": rng.random() < 0.2,
                    "birthday": date(
                        rng.randrange(1960, 2005), rng.randrange(1, 13), rng.randrange(1, 29)
                    ).isoformat(),
                },
                dnd=i % 17 == 0,
                dnd_reason="opt_out" if i % 17 == 0 else None,
                dnd_at=now if i % 17 == 0 else None,
                opted_in_at=now - timedelta(days=rng.randrange(1, 400)),
                opt_in_source="demo",
                created_at=now - timedelta(days=rng.randrange(0, 90)),
                updated_at=now,
            )
        )
        created += 1
    session.flush()
    existing = {s.name for s in segments.list_segments(session)}
    if "Mumbai and Pune" not in existing:
        segments.create_segment(
            session,
            {
                "name": "Mumbai and Pune",
                "kind": "dynamic",
                "rules": {
                    "any": [
                        {"field": "attributes.city", "op": "eq", "value": "Mumbai"},
                        {"field": "attributes.city", "op": "eq", "value": "Pune"},
                    ]
                },
            },
        )
    if "Loyal customers" not in existing:
        segments.create_segment(
            session,
            {
                "name": "Loyal customers",
                "kind": "dynamic",
                "rules": {
                    "all": [
                        {"field": "attributes.orders", "op": "gte", "value": 10},
                        {"field": "dnd", "op": "eq", "value": False},
                    ]
                },
            },
        )
    if "Beta testers" not in existing:
        beta = segments.create_segment(session, {"name": "Beta testers", "kind": "static"})
        ids = session.scalars(select(Contact.id).order_by(Contact.id).limit(5))
        segments.add_members(session, beta.id, list(ids))
    return created
