"""Routing what customers really type to the trigger they mean, or to the fallback.

21 triggers of every match type; 70 messages with typos, capitals, emoji, extra words and
other languages' accents, each handled as an inbound message (stored, matched, acted on).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from sqlalchemy import select

from chatman.messaging.inbound import InboundEvent
from chatman.messaging.models import InboundMessage
from chatman.triggers.crud import save_trigger, trigger_index
from chatman.triggers.inbound import InboundPolicy, handle_inbound
from chatman.triggers.models import Trigger
from chatman.triggers.optout import OptWords

# 11:00 in Kolkata on a Tuesday; 22:30 for the after-hours cases.
DAY = datetime(2026, 11, 24, 5, 30, tzinfo=UTC)
NIGHT = DAY + timedelta(hours=11, minutes=30)
POLICY = InboundPolicy(OptWords.of(("STOP", "UNSUBSCRIBE"), ("START",), "OPT_OUT"), "bye", "welcome back")

TRIGGERS = [
    ("greet", "exact", ["hi", "hello", "hey", "namaste"], {}),
    ("menu", "exact", ["menu"], {}),
    ("refund", "keyword", ["refund", "money back"], {}),
    ("invoice", "keyword", ["invoice", "bill", "receipt"], {}),
    ("agent", "keyword", ["human", "agent", "real person"], {}),
    ("price", "starts_with", ["price of", "how much"], {}),
    ("track", "starts_with", ["track"], {}),
    ("cancel", "contains", ["cancel"], {"priority": 1}),
    ("delivery", "contains", ["deliver"], {}),
    ("order_number", "regex", [r"\border\s*(?:no\.?|number|#)?\s*\d{5,}"], {"priority": 2}),
    ("pincode", "regex", [r"^\D*\b\d{6}\b\D*$"], {}),
    ("email", "regex", [r"[\w.+-]+@[\w-]+\.[\w.]+"], {}),
    ("where_order", "fuzzy", ["where is my order", "order status", "मेरा ऑर्डर कहाँ है"], {"threshold": 80}),
    (
        "hours",
        "fuzzy",
        ["opening hours", "what time do you open", "are you open today"],
        {"threshold": 75},
    ),
    ("returns", "fuzzy", ["return my product", "exchange my item"], {"threshold": 80}),
    ("buy", "button", ["BUY_NOW"], {}),
    ("not_interested", "button", ["NOT_INTERESTED"], {}),
    (
        "callback",
        "keyword",
        ["call me", "callback"],
        {"active_from": "09:00", "active_until": "18:00", "timezone": "Asia/Kolkata"},
    ),
    ("offers", "keyword", ["offer", "offers", "discount", "discounts", "sale"], {"priority": 1}),
    ("order_intl", "keyword", ["pedido", "commande", "bestellung"], {}),
]

# (message, button payload, when, expected trigger name, "fallback", or how it was handled)
TABLE = [
    ("Hi", None, DAY, "greet"),
    ("HELLO!!!", None, DAY, "greet"),
    ("heyyy 👋", None, DAY, "greet"),
    ("Namasté 🙏", None, DAY, "greet"),
    ("hi there", None, DAY, "fallback"),  # exact means the whole message
    ("menu", None, DAY, "menu"),
    ("Menu?", None, DAY, "menu"),
    ("show me the menu please", None, DAY, "fallback"),
    ("I want a refund", None, DAY, "refund"),
    ("REFUND please!!", None, DAY, "refund"),
    ("can I get my money back?", None, DAY, "refund"),
    ("refundable?", None, DAY, "fallback"),  # whole words only
    ("Send me the invoice", None, DAY, "invoice"),
    ("where is the bill", None, DAY, "invoice"),
    ("Need a receipt 🧾", None, DAY, "invoice"),
    ("I need to talk to a human", None, DAY, "agent"),
    ("Agent pls", None, DAY, "agent"),
    ("can i speak to a real person", None, DAY, "agent"),
    ("price of the blue kurta?", None, DAY, "price"),
    ("How much is this??", None, DAY, "price"),
    ("what's the price of it", None, DAY, "fallback"),  # does not start with it
    ("track my parcel", None, DAY, "track"),
    ("Track", None, DAY, "track"),
    ("I want to cancel", None, DAY, "cancel"),
    ("cancellation policy?", None, DAY, "cancel"),
    ("Cancelled, I want a refund", None, DAY, "cancel"),  # priority 1 beats the refund keyword
    ("When will it be delivered", None, DAY, "delivery"),
    ("delivery charges?", None, DAY, "delivery"),
    ("order #123456 status", None, DAY, "order_number"),  # priority 2 beats the fuzzy phrase
    ("ORDER 99999 where is it", None, DAY, "order_number"),
    ("order no. 554433", None, DAY, "order_number"),
    ("my pincode is 560001", None, DAY, "pincode"),
    ("560001", None, DAY, "pincode"),
    ("email me at asha.rao@example.com", None, DAY, "email"),
    ("wher is my ordr", None, DAY, "where_order"),
    ("Hi, where is my order??", None, DAY, "where_order"),
    ("wheres my order", None, DAY, "where_order"),
    ("order status pls", None, DAY, "where_order"),
    ("मेरा ऑर्डर कहां है", None, DAY, "where_order"),
    ("what time do u open", None, DAY, "hours"),
    ("are you open today?", None, DAY, "hours"),
    ("store opening hours", None, DAY, "hours"),
    ("opening hours?", None, DAY, "hours"),
    ("I want to return my product", None, DAY, "returns"),
    ("exchange my itm", None, DAY, "returns"),
    ("Buy now", "BUY_NOW", DAY, "buy"),
    ("Not interested", "NOT_INTERESTED", DAY, "not_interested"),
    ("Maybe later", "LATER", DAY, "fallback"),  # a button nobody handles
    ("please call me", None, DAY, "callback"),
    ("callback", None, DAY, "callback"),
    ("please call me", None, NIGHT, "fallback"),  # outside its active hours
    ("any offers?", None, DAY, "offers"),
    ("Diwali SALE 🎉🎉", None, DAY, "offers"),
    ("discounts on shoes?", None, DAY, "offers"),
    ("¿Dónde está mi pedido?", None, DAY, "order_intl"),
    ("Où est ma commande ?", None, DAY, "order_intl"),
    ("Wo ist meine BESTELLUNG", None, DAY, "order_intl"),
    ("ok", None, DAY, "fallback"),
    ("thanks!!", None, DAY, "fallback"),
    ("👍", None, DAY, "fallback"),
    ("asdfgh", None, DAY, "fallback"),
    ("lol", None, DAY, "fallback"),
    ("What colours does it come in", None, DAY, "fallback"),
    ("STOP", None, DAY, "opt_out"),
    ("is the sale on?", None, DAY, "offers"),
    ("hello", None, NIGHT, "greet"),
    ("tracking number?", None, DAY, "fallback"),  # "track" is a word of its own
    ("deliverd?", None, DAY, "delivery"),
    ("I'd like to exchange my item", None, DAY, "returns"),
    ("invoice for order 778899", None, DAY, "order_number"),
]


@pytest.fixture
def triggers(session):
    made = {}
    for name, match_type, patterns, extra in TRIGGERS:
        made[name] = save_trigger(
            session,
            {
                "name": name,
                "match_type": match_type,
                "patterns": patterns,
                "action": "reply",
                "reply_body": name,
                **extra,
            },
        )
    made["fallback"] = save_trigger(
        session, {"name": "fallback", "is_fallback": True, "action": "reply", "reply_body": "Sorry?"}
    )
    session.commit()
    return made


def test_the_table_has_every_match_type_and_enough_cases(triggers):
    assert {t.match_type for t in triggers.values() if not t.is_fallback} == {
        "exact",
        "keyword",
        "starts_with",
        "contains",
        "regex",
        "fuzzy",
        "button",
    }
    assert len(triggers) >= 20 and len(TABLE) >= 60


def test_realistic_messages_reach_the_trigger_they_mean(session, triggers):
    index = trigger_index(session)
    ids = {t.id: name for name, t in triggers.items()}
    phones = count(1)
    wrong = []
    for text, payload, when, expected in TABLE:
        event = InboundEvent(
            provider_sid=f"SM{next(phones):032d}",
            phone=f"+9199{next(phones):08d}",  # a new customer each time: no cooldowns, no flows
            body=text,
            button_payload=payload,
            button_text=text if payload else None,
        )
        handled = handle_inbound(session, event, POLICY, index, now=when)
        got = (
            ids.get(handled.trigger_id)
            if handled.handled_by in ("trigger", "fallback")
            else handled.handled_by
        )
        if got != expected:
            wrong.append((text, expected, got))
    session.commit()
    assert wrong == []
    kept = session.scalars(select(InboundMessage.handled_by)).all()
    assert len(kept) == len(TABLE) and kept.count("fallback") == sum(e == "fallback" for *_, e in TABLE)


def test_a_cooldown_lets_a_trigger_answer_a_contact_once_per_period(session, triggers):
    triggers["greet"].cooldown_s = 3600
    save_trigger(session, {"cooldown_s": 3600}, triggers["greet"].id)
    session.commit()
    index = trigger_index(session)
    answers = []
    for minutes in (0, 10, 70):
        event = InboundEvent(provider_sid=f"SMcool{minutes}", phone="+919900000001", body="hi")
        handled = handle_inbound(session, event, POLICY, index, now=DAY + timedelta(minutes=minutes))
        answers.append(session.get(Trigger, handled.trigger_id).name)
    assert answers == ["greet", "fallback", "greet"]


def test_the_index_is_rebuilt_when_the_trigger_set_changes(session, triggers):
    before = trigger_index(session)
    assert trigger_index(session) is before  # one key read, no rebuild
    save_trigger(
        session,
        {"name": "new", "match_type": "exact", "patterns": ["yo"], "action": "reply", "reply_body": "yo"},
    )
    session.commit()
    after = trigger_index(session)
    assert after is not before and after.candidates("YO!")[0].trigger.id == session.scalar(
        select(Trigger.id).where(Trigger.name == "new")
    )


def test_a_fuzzy_phrase_must_be_said_whole_give_or_take_typos_and_extra_words():
    from chatman.triggers.matcher import TriggerSpec, build_index

    index = build_index(
        [
            TriggerSpec(1, "fuzzy", ("where is my order",), threshold=80),
            TriggerSpec(2, "fuzzy", ("where is my kurta order",), threshold=80),
        ]
    )

    def scores(text):
        return {c.trigger.id: round(c.score) for c in index.candidates(text)}

    assert scores("Hi, where is my order please??") == {1: 100}  # extra words cost nothing
    assert scores("wher is my ordr") == {1: 89}  # typos cost a little
    assert scores("where is my kurta order") == {1: 100, 2: 100}
    assert scores("where is my kurt ordr")[2] >= 80
    assert 2 not in scores("where is my order")  # the phrase's own word "kurta" is missing
    assert scores("order") == {}  # half a phrase is not the phrase
