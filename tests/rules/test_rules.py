"""Post-campaign rules end to end: signed status and inbound webhooks, real workers, and the
contact, segment and DND changes that follow, once per rule and message."""

from __future__ import annotations

import random

import pytest
from sqlalchemy import select, update

from chatman import jobs, queues
from chatman.contacts import segments
from chatman.contacts.models import Contact, SegmentMember
from chatman.errors import Invalid
from chatman.jobs import enqueue_dispatch
from chatman.ledger.models import Message
from chatman.rules import crud
from chatman.rules.models import RuleFiring
from chatman.timeutils import utcnow
from tests.campaigns.clocked import everyone
from tests.conftest import twilio_env
from tests.factories import define, inbound_form, launch_campaign, make_submitted_run, signed_post
from tests.webhooks.test_twilio_status import params, post

INBOUND = "/webhooks/twilio/inbound"


def static(session, name: str, members=()):
    segment = segments.create_segment(session, {"name": name, "kind": "static"})
    session.flush()
    if members:
        segments.add_members(session, segment.id, members)
    session.commit()
    return segment


def rule(session, campaign, name: str, condition: dict, *actions: dict):
    return crud.create_rule(
        session, campaign.id, {"name": name, "condition": condition, "actions": list(actions)}
    )


def contact(session, message) -> Contact:
    session.expire_all()
    return session.get(Contact, message.contact_id)


def members(session, segment) -> set[int]:
    session.expire_all()
    return set(
        session.scalars(select(SegmentMember.contact_id).where(SegmentMember.segment_id == segment.id))
    )


def firings(session, rule) -> list[RuleFiring]:
    session.expire_all()
    return list(
        session.scalars(select(RuleFiring).where(RuleFiring.rule_id == rule.id).order_by(RuleFiring.id))
    )


def test_each_condition_and_action_from_signed_webhooks_through_workers(
    app, client, auth, session, run_worker
):
    define(session, tier="string", score="number", stage="string")
    campaign, _, _, messages = make_submitted_run(session, 6)
    reader, undeliverable, uninterested, resubscriber, replier, quiet = messages
    promo = static(session, "promo", [m.contact_id for m in messages])
    warm = static(session, "warm")
    rules = [
        rule(
            session,
            campaign,
            "read: warm",
            {"status": "read"},
            {"type": "set_attribute", "attribute": "tier", "value": "warm"},
            {"type": "increment_attribute", "attribute": "score", "by": 5},
            {"type": "add_to_segment", "segment_id": warm.id},
        ),
        rule(
            session,
            campaign,
            "undeliverable: DND",
            {"status": "failed", "error_codes": ["63024"]},
            {"type": "set_dnd", "reason": "undeliverable"},
        ),
        rule(
            session,
            campaign,
            "not interested",
            {"tapped": "NOT_INTERESTED"},
            {"type": "remove_from_segment", "segment_id": promo.id},
            {"type": "unset_attribute", "attribute": "tier"},
        ),
        rule(session, campaign, "resubscribe", {"tapped": "Resubscribe"}, {"type": "clear_dnd"}),
        rule(
            session,
            campaign,
            "delivered and replied",
            {"all": [{"status": "delivered"}, {"replied": True}]},
            {"type": "set_attribute", "attribute": "stage", "value": "talking"},
        ),
    ]
    session.commit()
    read_warm, undeliverable_dnd, not_interested, resubscribe, replied = rules
    session.execute(
        Contact.__table__.update()
        .where(Contact.id == uninterested.contact_id)
        .values(attributes={"tier": "cold"})
    )
    session.execute(
        Contact.__table__.update()
        .where(Contact.id == resubscriber.contact_id)
        .values(dnd=True, dnd_reason="manual")
    )
    session.commit()

    # Every status twice, shuffled: a rule fires once per message whatever the order.
    callbacks = [
        (reader, "delivered"),
        (reader, "read"),
        (undeliverable, "undelivered"),
        (uninterested, "delivered"),
        (resubscriber, "delivered"),
        (replier, "delivered"),
        (quiet, "sent"),
    ] * 2
    random.Random(7).shuffle(callbacks)
    for message, status in callbacks:
        assert post(client, app, params(message.provider_sid, status)).status_code == 204
    phone = {m.id: contact(session, m).phone for m in messages}
    taps = [
        (uninterested, "No thanks", "NOT_INTERESTED"),
        (resubscriber, "Resubscribe", "RESUB"),
    ]
    for message, text, payload in taps:
        form = inbound_form(
            phone[message.id],
            text,
            ButtonPayload=payload,
            ButtonText=text,
            OriginalRepliedMessageSid=message.provider_sid,
        )
        assert signed_post(client, app, INBOUND, form).status_code == 200
    assert (
        signed_post(client, app, INBOUND, inbound_form(phone[replier.id], "sounds good")).status_code == 200
    )
    run_worker()

    assert (contact(session, reader).attributes["tier"], contact(session, reader).attributes["score"]) == (
        "warm",
        5,
    )
    assert members(session, warm) == {reader.contact_id}
    assert (contact(session, undeliverable).dnd, contact(session, undeliverable).dnd_reason) == (
        True,
        "undeliverable",
    )
    assert uninterested.contact_id not in members(session, promo)
    assert "tier" not in contact(session, uninterested).attributes
    assert contact(session, resubscriber).dnd is False
    assert contact(session, replier).attributes.get("stage") == "talking"
    assert contact(session, quiet).attributes == {} and contact(session, quiet).dnd is False
    fired = {rule.name: [(f.contact_id, f.status) for f in firings(session, rule)] for rule in rules}
    assert fired == {
        "read: warm": [(reader.contact_id, "done")],
        "undeliverable: DND": [(undeliverable.contact_id, "done")],
        "not interested": [(uninterested.contact_id, "done")],
        "resubscribe": [(resubscriber.contact_id, "done")],
        # A button tap is a reply too (it answers the message).
        "delivered and replied": [(m.contact_id, "done") for m in (uninterested, resubscriber, replier)],
    }
    # The same callbacks again, and the workers again: nothing fires twice.
    for message, status in callbacks:
        post(client, app, params(message.provider_sid, status))
    run_worker()
    assert contact(session, reader).attributes["score"] == 5
    assert sum(len(firings(session, rule)) for rule in rules) == 7
    audit = client.get(f"/api/v1/rules/{read_warm.id}/firings", headers=auth).json
    assert [o["status"] for o in audit[0]["outcomes"]] == ["done", "done", "done"]


def test_a_failing_action_is_recorded_with_why_and_the_others_go_on(app, client, session, run_worker):
    define(session, tier="string")
    campaign, _, _, messages = make_submitted_run(session, 3)
    doomed = static(session, "doomed")
    delivered = rule(
        session,
        campaign,
        "delivered",
        {"status": "delivered"},
        {"type": "add_to_segment", "segment_id": doomed.id},
        {"type": "set_attribute", "attribute": "tier", "value": "reached"},
    )
    session.commit()
    segments.delete_segment(session, doomed.id)  # after the rule was made: its action cannot succeed
    session.commit()
    for message in messages:
        post(client, app, params(message.provider_sid, "delivered"))
    run_worker()
    got = firings(session, delivered)
    assert len(got) == 3 and {f.status for f in got} == {"failed"}
    for firing in got:
        first, second = firing.outcomes
        assert first["status"] == "failed" and "segment" in first["reason"], first
        assert second == {"type": "set_attribute", "status": "done"}
    assert all(contact(session, m).attributes["tier"] == "reached" for m in messages)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"condition": {"status": "opened"}}, "condition.status"),
        ({"condition": {"status": "read", "error_codes": ["1"]}}, "condition.error_codes"),
        ({"condition": {"replied": False}}, "condition.replied"),
        ({"condition": {"any": []}}, "condition"),
        ({"actions": [{"type": "increment_attribute", "attribute": "tier"}]}, "actions[0].attribute"),
        ({"actions": [{"type": "set_attribute", "attribute": "nope", "value": 1}]}, "actions[0].attribute"),
        ({"actions": [{"type": "add_to_segment", "segment_id": "dynamic"}]}, "actions[0].segment_id"),
        ({"actions": [{"type": "launch_rocket"}]}, "actions[0].type"),
        ({"condition": {"no_reply_within": 0}}, "condition.no_reply_within"),
        ({"condition": {"not_read_within": 721}}, "condition.not_read_within"),
        (
            {"condition": {"replied": {"match_type": "regex", "patterns": ["("]}}},
            "condition.replied.patterns[0]",
        ),
        (
            {"condition": {"replied": {"match_type": "psychic", "patterns": ["x"]}}},
            "condition.replied.match_type",
        ),
        ({"condition": {"skipped": 3}}, "condition.skipped"),
        ({"condition": {"not": {"status": "read"}, "replied": True}}, "condition"),
        ({"actions": [{"type": "start_campaign", "campaign_id": "one-time"}]}, "actions[0].campaign_id"),
        ({"actions": [{"type": "start_flow", "flow_id": 999999}]}, "actions[0].flow_id"),
        (
            {"actions": [{"type": "set_attribute", "attribute": "tier", "value": "{{nope}}"}]},
            "actions[0].value",
        ),
    ],
)
def test_bad_rules_are_refused_with_the_field_named(client, auth, session, data, field):
    define(session, tier="string")
    campaign, *_ = make_submitted_run(session, 1)
    dynamic = everyone(session)
    if data.get("actions") and data["actions"][0].get("segment_id") == "dynamic":
        data = {"actions": [{"type": "add_to_segment", "segment_id": dynamic.id}]}
    if data.get("actions") and data["actions"][0].get("campaign_id") == "one-time":
        data = {"actions": [{"type": "start_campaign", "campaign_id": campaign.id}]}  # not triggered
    body = {"name": "r", "condition": {"status": "read"}, "actions": [{"type": "clear_dnd"}]} | data
    answer = client.post(f"/api/v1/campaigns/{campaign.id}/rules", json=body, headers=auth)
    assert answer.status_code == 422, answer.json
    assert field in answer.json["errors"], answer.json


def test_rules_through_the_api(client, auth, session):
    campaign, *_ = make_submitted_run(session, 1)
    url = f"/api/v1/campaigns/{campaign.id}/rules"
    body = {"name": "read", "condition": {"status": "read"}, "actions": [{"type": "set_dnd", "reason": "x"}]}
    created = client.post(url, json=body, headers=auth)
    assert created.status_code == 201, created.json
    rule_url = f"/api/v1/rules/{created.json['id']}"
    assert client.get(url, headers=auth).json[0]["name"] == "read"
    assert client.patch(rule_url, json={"enabled": False}, headers=auth).json["enabled"] is False
    assert client.get(f"{rule_url}/firings", headers=auth).json == []
    assert client.delete(rule_url, headers=auth).status_code == 204
    assert client.get(rule_url, headers=auth).status_code == 404
    assert client.post("/api/v1/campaigns/999999/rules", json=body, headers=auth).status_code == 404
    with pytest.raises(Invalid):
        crud.create_rule(session, campaign.id, {"name": "x", "condition": {"status": "read"}})


def test_a_thousand_messages_with_every_status_twice_in_random_order_fire_each_rule_once(
    app, client, session, run_worker
):
    define(session, score="number")
    campaign, _, _, messages = make_submitted_run(session, 1000)
    readers = static(session, "readers")
    delivered = rule(
        session,
        campaign,
        "delivered: +1",
        {"status": "delivered"},
        {"type": "increment_attribute", "attribute": "score", "by": 1},
    )
    read = rule(
        session, campaign, "read", {"status": "read"}, {"type": "add_to_segment", "segment_id": readers.id}
    )
    failed = rule(
        session, campaign, "failed: DND", {"status": "failed"}, {"type": "set_dnd", "reason": "failed"}
    )
    session.commit()
    # Each message's own story (a quarter each: sent only, delivered, read, failed), every
    # callback of it sent twice, all of them shuffled together.
    stories = [["sent"], ["sent", "delivered"], ["sent", "delivered", "read"], ["sent", "undelivered"]]
    story = {m.id: stories[i % 4] for i, m in enumerate(messages)}
    callbacks = [(m, status) for m in messages for status in story[m.id] * 2]
    random.Random(12).shuffle(callbacks)
    # Half, then workers, then the rest with two workers racing: some statuses arrive after
    # the rules already looked at their message.
    half = len(callbacks) // 2
    for message, status in callbacks[:half]:
        assert post(client, app, params(message.provider_sid, status)).status_code == 204
    run_worker()
    for message, status in callbacks[half:]:
        assert post(client, app, params(message.provider_sid, status)).status_code == 204
    run_worker(workers=2)

    def who(*endings: str) -> set[int]:
        return {m.contact_id for m in messages if story[m.id][-1] in endings}

    fired = {r.name: [f.contact_id for f in firings(session, r)] for r in (delivered, read, failed)}
    assert {name: len(ids) for name, ids in fired.items()} == {
        "delivered: +1": 500,
        "read": 250,
        "failed: DND": 250,
    }
    assert set(fired["delivered: +1"]) == who("delivered", "read")
    assert set(fired["read"]) == who("read")
    assert set(fired["failed: DND"]) == who("undelivered")
    session.expire_all()
    scores = {
        c.id: c.attributes.get("score")
        for c in session.scalars(select(Contact).where(Contact.id.in_([m.contact_id for m in messages])))
    }
    # An increment that ran twice would show as 2.
    assert {cid: scores[cid] for cid in who("delivered", "read")} == {
        cid: 1 for cid in who("delivered", "read")
    }
    assert members(session, readers) == who("read")
    dnd = set(session.scalars(select(Contact.id).where(Contact.dnd.is_(True))))
    assert dnd == who("undelivered")


def test_a_send_the_provider_refuses_fires_the_failed_rule(session, redis, run_worker, twilio_stub):
    # No callback ever comes for a message refused at hand-over: the send batch hands it to
    # the rules itself.
    campaign, run = launch_campaign(session, 3, body=None, freeze=False)
    invalid = rule(
        session,
        campaign,
        "invalid number: DND",
        {"status": "failed", "error_codes": ["21211"]},
        {"type": "set_dnd", "reason": "invalid_number"},
    )
    session.commit()
    twilio_stub.config(errors=[{"status": 400, "code": 21211, "message": "Invalid 'To' Phone Number"}])
    enqueue_dispatch(redis, run.id)
    run_worker(**twilio_env(twilio_stub))
    session.expire_all()
    refused = session.scalars(
        select(Message).where(Message.run_id == run.id, Message.status == "failed")
    ).one()
    assert [(f.contact_id, f.status) for f in firings(session, invalid)] == [(refused.contact_id, "done")]
    dnd = session.execute(select(Contact.id, Contact.dnd_reason).where(Contact.dnd.is_(True))).all()
    assert dnd == [(refused.contact_id, "invalid_number")]


def test_a_callback_that_raced_its_send_fires_the_rule_when_the_clock_applies_it(
    app, client, session, redis, run_worker
):
    define(session, tier="string")
    campaign, _, _, (message,) = make_submitted_run(session, 1, submitted=False)
    reached = rule(
        session,
        campaign,
        "delivered",
        {"status": "delivered"},
        {"type": "set_attribute", "attribute": "tier", "value": "reached"},
    )
    session.commit()
    # The callback comes before the send's answer gave the row its sid: it waits.
    assert post(client, app, params("SM" + "7" * 32, "delivered")).status_code == 204
    run_worker()
    assert firings(session, reached) == []
    session.execute(
        update(Message)
        .where(Message.id == message.id)
        .values(provider_sid="SM" + "7" * 32, status="submitted", submitted_at=utcnow())
    )
    session.commit()
    # The clock's sweep of waiting callbacks applies it, and the rule looks.
    queues.queue(redis, queues.SYSTEM).enqueue(jobs.apply_waiting_events)
    run_worker()
    assert [f.contact_id for f in firings(session, reached)] == [message.contact_id]
    assert contact(session, message).attributes == {"tier": "reached"}


def test_a_dry_run_says_who_the_rule_would_fire_for_now(app, client, auth, session, run_worker):
    campaign, _, _, messages = make_submitted_run(session, 4)
    for message in messages[:2]:
        post(client, app, params(message.provider_sid, "read"))
    run_worker()
    body = {
        "name": "read",
        "enabled": False,
        "condition": {"status": "read"},
        "actions": [{"type": "set_dnd", "reason": "x"}],
    }
    created = client.post(f"/api/v1/campaigns/{campaign.id}/rules", json=body, headers=auth).json
    dry = client.post(f"/api/v1/rules/{created['id']}/dry-run", headers=auth)
    assert dry.status_code == 200, dry.json
    assert dry.json["would_fire"] == 2 and dry.json["fired_before"] == 0
    assert [s["contact_id"] for s in dry.json["sample"]] == [m.contact_id for m in messages[:2]]
    assert session.scalars(select(Contact.id).where(Contact.dnd.is_(True))).all() == []  # nothing done
    client.patch(f"/api/v1/rules/{created['id']}", json={"enabled": True}, headers=auth)
    post(client, app, params(messages[2].provider_sid, "read"))
    run_worker()
    again = client.post(f"/api/v1/rules/{created['id']}/dry-run", headers=auth).json
    # Only the message whose status moved after the rule was enabled was evaluated: the two
    # read before are still to fire, the third fired and never fires again.
    assert (again["would_fire"], again["fired_before"]) == (2, 1)
    assert client.post("/api/v1/rules/999999/dry-run", headers=auth).status_code == 404


def test_two_jobs_on_the_same_messages_at_once_fire_each_rule_once(app, session):
    import threading

    from chatman.rules.engine import evaluate

    define(session, score="number")
    campaign, _, _, messages = make_submitted_run(session, 5)
    sent = rule(
        session,
        campaign,
        "sent: +1",
        {"status": "sent"},
        {"type": "increment_attribute", "attribute": "score", "by": 1},
    )
    session.execute(update(Message).values(status="sent", sent_at=utcnow()))
    session.commit()
    db = app.extensions["chatman.db"]
    ids = [m.id for m in messages]
    second: dict[str, int] = {}

    def other_job() -> None:
        with db.sessionmaker() as other:
            second["fired"] = evaluate(other, ids).fired
            other.commit()

    with db.sessionmaker() as first:
        assert evaluate(first, ids).fired == 5  # not committed yet: the other job waits on it
        racing = threading.Thread(target=other_job)
        racing.start()
        racing.join(timeout=1)
        first.commit()
    racing.join(timeout=60)
    assert second == {"fired": 0}
    assert len(firings(session, sent)) == 5
    assert {contact(session, m).attributes["score"] for m in messages} == {1}
