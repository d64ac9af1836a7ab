"""Drip campaigns driven by a controllable clock: the real clock tasks tick at chosen times, a
worker runs their jobs in this process, and messages go through the Twilio adapter to the
local stub, where they are counted."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, time, timedelta
from itertools import count
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from chatman.campaigns import drips, lifecycle
from chatman.campaigns.models import Enrollment
from chatman.contacts import segments
from chatman.errors import Conflict, Invalid
from chatman.messaging.inbound import InboundEvent
from chatman.timeutils import utcnow
from chatman.triggers.inbound import InboundPolicy, handle_inbound
from chatman.triggers.matcher import TriggerIndex
from chatman.triggers.optout import OptWords
from tests.campaigns.clocked import everyone, sent, templates
from tests.factories import define, make_contact

POLICY = InboundPolicy(OptWords.of(("STOP",), ("START",), "OPT_OUT"), "bye", "welcome back")
KOLKATA = ZoneInfo("Asia/Kolkata")
_sids = count(1)


def reply(session, phone: str, when: datetime, body: str = "thanks") -> None:
    event = InboundEvent(provider_sid=f"SM{next(_sids):032d}", phone=phone, body=body)
    handle_inbound(session, event, POLICY, TriggerIndex([]), now=when)
    session.commit()


def trial_segment(session):
    define(session, plan="string")
    segment = segments.create_segment(
        session,
        {
            "name": "trial",
            "kind": "dynamic",
            "rules": {"all": [{"field": "attributes.plan", "op": "eq", "value": "trial"}]},
        },
    )
    session.commit()
    return segment


def enrollment(session, contact) -> Enrollment:
    return session.scalars(select(Enrollment).where(Enrollment.contact_id == contact.id)).one()


def test_a_five_step_drip_per_contact_with_replies_opt_out_and_a_live_segment(session, drive, twilio_stub):
    ids = templates(session, "step 1", "step 2", "step 3", "step 4", "step 5")
    segment = trial_segment(session)
    a, b, c, d = (
        make_contact(session, attributes={"plan": "trial"}, timezone="Asia/Kolkata") for _ in range(4)
    )
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "Onboarding",
            "kind": "drip",
            "include_segments": [segment.id],
            "timezone": "Asia/Kolkata",
            "drip": {"exit_on": ["replied", "opted_out", "left_segment"]},
            "steps": [
                {"template_id": ids[0]},
                {"template_id": ids[1], "wait": {"days": 1, "at": "10:00"}},
                {"template_id": ids[2], "wait": {"days": 2}, "condition": {"if": "not_replied"}},
                {"template_id": ids[3], "wait": {"hours": 4}},
                {"template_id": ids[4], "wait": {"days": 1}},
            ],
        },
    )
    session.commit()
    start = utcnow().replace(second=0, microsecond=0)
    start -= timedelta(minutes=start.minute % 30)
    lifecycle.launch(session, campaign.id, now=start)
    session.commit()

    # Step 2 at 10:00 in Kolkata the day after; step 3 two days later, step 4 four hours on.
    day_after = start.astimezone(KOLKATA).date() + timedelta(days=1)
    step_2 = datetime.combine(day_after, time(10, 0), KOLKATA).astimezone(UTC)
    step_3 = step_2 + timedelta(days=2)
    joined = []
    events = {
        start + timedelta(hours=1): lambda now: reply(session, a.phone, now),  # after step 1
        step_2 + timedelta(hours=1): lambda now: reply(session, d.phone, now, "STOP"),  # after step 2
        step_2 + timedelta(hours=2): lambda now: joined.append(  # joins the live segment
            make_contact(session, attributes={"plan": "trial"}, timezone="Asia/Kolkata")
        ),
        step_3 + timedelta(hours=1): lambda now: reply(session, b.phone, now),  # after step 3
    }
    now = start
    while now < start + timedelta(days=8):
        drive(now)
        if now in events:
            events[now](now)
        now += timedelta(minutes=30)
    (e,) = joined

    got = sent(twilio_stub)
    assert got[a.phone] == ["step 1"]
    assert got[b.phone] == ["step 1", "step 2", "step 3"]
    assert got[c.phone] == ["step 1", "step 2", "step 3", "step 4", "step 5"]
    assert got[d.phone] == ["step 1", "step 2"]
    assert got[e.phone] == ["step 1", "step 2", "step 3", "step 4", "step 5"]  # enrolled when it joined
    states = {
        x.phone: (enrollment(session, x).status, enrollment(session, x).exit_reason) for x in (a, b, c, d, e)
    }
    assert states == {
        a.phone: ("exited", "replied"),
        b.phone: ("exited", "replied"),
        c.phone: ("completed", None),
        d.phone: ("exited", "opted_out"),
        e.phone: ("completed", None),
    }
    # Step 2 goes at 10:00 in Kolkata the next day; the later steps keep their waits.
    from chatman.ledger.models import Message

    rows = session.execute(
        select(Message.step_id, Message.created_at).where(Message.contact_id == c.id).order_by(Message.id)
    ).all()
    local = [r.created_at.astimezone(KOLKATA) for r in rows]
    assert (
        local[1].strftime("%H:%M") == "10:00"
        and local[1].date() == (start.astimezone(KOLKATA) + timedelta(days=1)).date()
    )
    assert local[2] - local[1] == timedelta(days=2)
    assert local[3] - local[2] == timedelta(hours=4)
    assert local[4] - local[3] == timedelta(days=1)


def test_not_replied_skips_a_step_for_who_replied_and_the_drip_goes_on(session, drive, twilio_stub):
    ids = templates(session, "one", "two", "nudge", "four")
    segment = trial_segment(session)
    quiet, talker = (make_contact(session, attributes={"plan": "trial"}) for _ in range(2))
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "Nudges",
            "kind": "drip",
            "include_segments": [segment.id],
            "drip": {"exit_on": ["opted_out"]},
            "steps": [
                {"template_id": ids[0]},
                {"template_id": ids[1], "wait": {"hours": 2}},
                {"template_id": ids[2], "wait": {"hours": 2}, "condition": {"if": "not_replied"}},
                {"template_id": ids[3], "wait": {"hours": 2}},
            ],
        },
    )
    session.commit()
    start = utcnow().replace(microsecond=0)
    lifecycle.launch(session, campaign.id, now=start)
    session.commit()
    for hours in range(8):
        now = start + timedelta(hours=hours)
        drive(now)
        if hours == 3:  # the first tick enrolls, the next sends step 1: step 2 goes at hour 3
            reply(session, talker.phone, now + timedelta(minutes=30))  # answers step 2
    got = sent(twilio_stub)
    assert got[quiet.phone] == ["one", "two", "nudge", "four"]
    assert got[talker.phone] == ["one", "two", "four"]
    counters = lifecycle_counters(session, campaign.id)
    assert counters["skipped:condition_not_met"] == 1


def lifecycle_counters(session, campaign_id: int) -> dict[str, int]:
    from chatman.ledger.counters import stored

    totals: dict[str, int] = defaultdict(int)
    for (_, _, _, metric), value in stored(session, campaign_id).items():
        totals[metric] += value
    return totals


def test_editing_step_3_changes_it_for_who_has_not_reached_it_and_resends_nothing(
    session, drive, twilio_stub
):
    ids = templates(session, "first", "second", "third (old)", "third (new)")
    ahead, behind = make_contact(session), make_contact(session)
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "Edited",
            "kind": "drip",
            "steps": [
                {"template_id": ids[0]},
                {"template_id": ids[1], "wait": {"days": 1}},
                {"template_id": ids[2], "wait": {"days": 1}},
            ],
        },
    )
    session.commit()
    start = utcnow().replace(microsecond=0)
    lifecycle.launch(session, campaign.id, now=start)
    session.commit()
    from chatman.campaigns import drips

    drips.enroll(session, campaign.id, [ahead.id], "api", start)
    session.commit()
    for hours in range(0, 50, 6):  # ahead: steps 1-3 by hour 48
        drive(start + timedelta(hours=hours))
    drips.enroll(session, campaign.id, [behind.id], "api", start + timedelta(hours=48))
    session.commit()
    drive(start + timedelta(hours=48))  # behind: step 1
    assert sent(twilio_stub) == {ahead.phone: ["first", "second", "third (old)"], behind.phone: ["first"]}

    steps = drips.step_dicts(session, campaign.id)
    steps[2] |= {"template_id": ids[3], "wait": {"days": 2}}
    lifecycle.update_campaign(session, campaign.id, {"steps": steps})
    session.commit()
    for hours in range(48, 48 + 24 * 4, 6):
        drive(start + timedelta(hours=hours))
    got = sent(twilio_stub)
    assert got[ahead.phone] == ["first", "second", "third (old)"]  # nothing sent again
    assert got[behind.phone] == ["first", "second", "third (new)"]
    rows = session.execute(select(Enrollment.contact_id, Enrollment.status)).all()
    assert sorted(s for _, s in rows) == ["completed", "completed"]
    # the new wait (2 days after step 2) counted from when behind got step 2
    from chatman.ledger.models import Message

    times = session.scalars(
        select(Message.created_at).where(Message.contact_id == behind.id).order_by(Message.id)
    ).all()
    assert times[2] - times[1] == timedelta(days=2)

    # A step that contacts were sent cannot be removed; steps keep their order.
    with pytest.raises(Conflict):
        lifecycle.update_campaign(session, campaign.id, {"steps": steps[:2]})
    session.rollback()
    with pytest.raises(Invalid):
        lifecycle.update_campaign(session, campaign.id, {"steps": [steps[1], steps[0], steps[2]]})
    session.rollback()


def two_step_drip(session, contact, first: int, second: int, wait: dict, start: datetime):
    """A running drip of two templates, `wait` apart, with `contact` enrolled at `start`."""
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "Two steps",
            "kind": "drip",
            "steps": [{"template_id": first}, {"template_id": second, "wait": wait}],
        },
    )
    session.commit()
    lifecycle.launch(session, campaign.id, now=start)
    drips.enroll(session, campaign.id, [contact.id], "api", start)
    session.commit()
    return campaign


def test_a_shortened_wait_applies_to_contacts_already_waiting(session, drive, twilio_stub):
    first, second = templates(session, "welcome", "tips")
    contact = make_contact(session)
    start = datetime(2027, 1, 13, 8, 0, tzinfo=UTC)
    campaign = two_step_drip(session, contact, first, second, {"days": 3}, start)
    drive(start)
    assert sent(twilio_stub) == {contact.phone: ["welcome"]}
    steps = drips.step_dicts(session, campaign.id)
    steps[1]["wait"] = {"hours": 2}  # counted from when step 1 went: due at 10:00
    lifecycle.update_campaign(session, campaign.id, {"steps": steps})
    session.commit()
    drive(start + timedelta(hours=1))
    assert sent(twilio_stub) == {contact.phone: ["welcome"]}
    drive(start + timedelta(hours=2))
    assert sent(twilio_stub) == {contact.phone: ["welcome", "tips"]}


@pytest.mark.parametrize("catch_up", [False, True])
def test_pause_holds_every_step_and_resume_moves_the_waits_on(session, drive, twilio_stub, catch_up):
    ids = templates(session, "a", "b")
    contact = make_contact(session)
    start = datetime(2027, 1, 13, 8, 0, tzinfo=UTC)
    campaign = two_step_drip(session, contact, ids[0], ids[1], {"hours": 3}, start)
    drive(start)
    lifecycle.set_status(session, campaign.id, "pause", now=start + timedelta(hours=1))
    session.commit()
    drive(start + timedelta(hours=5))  # step 2 falls due (at 3 h) during the pause: nothing goes
    assert sent(twilio_stub)[contact.phone] == ["a"]
    back = start + timedelta(hours=6)
    lifecycle.set_status(session, campaign.id, "resume", catch_up=catch_up, now=back)
    session.commit()
    if catch_up:  # what fell due meanwhile goes now
        assert enrollment(session, contact).next_due_at == start + timedelta(hours=3)
        drive(back)
        assert sent(twilio_stub)[contact.phone] == ["a", "b"]
        return
    # The wait resumes where it stopped: due 5 hours (the pause) later than it was.
    assert enrollment(session, contact).next_due_at == start + timedelta(hours=8)
    drive(start + timedelta(hours=7, minutes=45))
    assert sent(twilio_stub)[contact.phone] == ["a"]
    drive(start + timedelta(hours=8))
    assert sent(twilio_stub)[contact.phone] == ["a", "b"]


def test_cancel_ends_enrollments_with_a_reason(session, drive):
    ids = templates(session, "a", "b")
    contact = make_contact(session)
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "C",
            "kind": "drip",
            "steps": [{"template_id": ids[0]}, {"template_id": ids[1], "wait": {"days": 1}}],
        },
    )
    session.commit()
    lifecycle.launch(session, campaign.id)
    lifecycle.enroll_contacts(session, campaign.id, [contact.id])
    session.commit()
    lifecycle.set_status(session, campaign.id, "cancel")
    session.commit()
    assert (enrollment(session, contact).status, enrollment(session, contact).exit_reason) == (
        "exited",
        "campaign_cancelled",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"steps": []}, "steps"),
        ({"steps": [{"body": "x", "condition": {"if": "not_read"}}]}, "steps[0].condition"),
        (
            {"steps": [{"body": "x"}, {"body": "y", "condition": {"if": "not_read", "step": 3}}]},
            "steps[1].condition.step",
        ),
        (
            {"steps": [{"body": "x"}, {"body": "y", "condition": {"if": "tapped"}}]},
            "steps[1].condition.button",
        ),
        ({"steps": [{"body": "x", "wait": {"days": 1, "hours": 2}}]}, "steps[0].wait"),
        ({"steps": [{"body": "x", "wait": {"hours": 2, "at": "10:00"}}]}, "steps[0].wait.at"),
        ({"steps": [{"body": "x", "wait": {"fortnights": 2}}]}, "steps[0].wait.fortnights"),
        ({"steps": [{"template_id": 999999}]}, "steps[0].template_id"),
        (
            {"steps": [{"body": "x"}], "drip": {"goal": {"attribute": "nope", "value": 1}}},
            "drip.goal.attribute",
        ),
        ({"steps": [{"body": "x"}], "drip": {"exit_on": ["bored"]}}, "drip.exit_on"),
        ({"steps": [{"body": "x"}], "timezone": "Mars/Olympus"}, "timezone"),
    ],
)
def test_bad_drips_are_refused_with_the_field_named(client, auth, body, field):
    answer = client.post("/api/v1/campaigns", json={"name": "d", "kind": "drip", **body}, headers=auth)
    assert answer.status_code == 422, answer.json
    assert field in answer.json["errors"], answer.json


def test_a_drip_through_the_api(client, auth, session):
    contact = make_contact(session)
    created = client.post(
        "/api/v1/campaigns",
        json={
            "name": "Welcome",
            "kind": "drip",
            "steps": [{"body": "hi"}, {"body": "tip", "wait": {"days": 1, "at": "09:00"}}],
        },
        headers=auth,
    )
    assert created.status_code == 201, created.json
    campaign = created.json
    assert [s["wait"] for s in campaign["steps"]] == [
        {"after": "enrollment"},
        {"days": 1, "after": "previous", "at": "09:00"},
    ]
    assert client.post(f"/api/v1/campaigns/{campaign['id']}/launch", headers=auth).status_code == 202
    enrolled = client.post(
        f"/api/v1/campaigns/{campaign['id']}/enrollments", json={"contact_ids": [contact.id]}, headers=auth
    )
    assert enrolled.json == {"enrolled": [contact.id]}
    again = client.post(
        f"/api/v1/campaigns/{campaign['id']}/enrollments", json={"contact_ids": [contact.id]}, headers=auth
    )
    assert again.json == {"enrolled": []}  # enter once
    missing = client.post(
        f"/api/v1/campaigns/{campaign['id']}/enrollments", json={"contact_ids": [999999]}, headers=auth
    )
    assert missing.status_code == 422 and "contact_ids[0]" in missing.json["errors"]
    listed = client.get(f"/api/v1/campaigns/{campaign['id']}/enrollments", headers=auth).json["items"]
    assert [(e["contact_id"], e["status"], e["next_step"], e["source"]) for e in listed] == [
        (contact.id, "active", 1, "api")
    ]
    mine = client.get(f"/api/v1/contacts/{contact.id}/enrollments", headers=auth).json["items"]
    assert [e["campaign_id"] for e in mine] == [campaign["id"]]
    # A running drip's audience cannot change; its steps can.
    refused = client.patch(f"/api/v1/campaigns/{campaign['id']}", json={"timezone": "UTC"}, headers=auth)
    assert refused.status_code == 409


def test_a_date_rule_is_checked(session):
    from chatman.campaigns.drips import parse_settings

    define(session, birthday="date", plan="string")
    with pytest.raises(Invalid) as missing:
        parse_settings(session, "date", {"attribute": "anniversary"})
    assert "date_field.attribute" in missing.value.errors
    with pytest.raises(Invalid) as wrong:
        parse_settings(session, "date", {"attribute": "plan"})
    assert "holds strings, not dates" in wrong.value.message
    assert parse_settings(session, "date", {"attribute": "birthday", "offset_days": -1})["at"] == "10:00"


def test_a_birthday_goes_to_each_contact_on_their_day_at_10_in_their_zone_once_a_year(
    session, drive, twilio_stub
):
    define(session, birthday="date")
    (template,) = templates(session, "Happy birthday!")
    people = {
        "Asia/Kolkata": "1990-03-10",
        "Europe/London": "1985-03-28",  # 28 March 2027: the UK's clocks go forward that night
        "America/Los_Angeles": "2000-11-07",  # 7 November 2027: they go back that night
    }
    contacts = {
        zone: make_contact(session, timezone=zone, attributes={"birthday": day})
        for zone, day in people.items()
    }
    undated = make_contact(session, timezone="UTC")
    segment = everyone(session)
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "Birthdays",
            "kind": "date",
            "include_segments": [segment.id],
            "date_field": {"attribute": "birthday", "at": "10:00", "repeat": "yearly"},
            "template_id": template,
        },
    )
    session.commit()
    start = datetime(2027, 1, 1, tzinfo=UTC)
    lifecycle.launch(session, campaign.id, now=start)
    session.commit()
    drive(start)
    assert {e.contact_id for e in session.scalars(select(Enrollment))} == {c.id for c in contacts.values()}

    def days_around(year: int):
        for day in people.values():
            middle = datetime(year, int(day[5:7]), int(day[8:10]), tzinfo=UTC)
            now = middle - timedelta(days=1)
            while now < middle + timedelta(days=2):
                yield now
                now += timedelta(minutes=30)

    for year in (2027, 2028):
        for now in sorted(days_around(year)):
            drive(now)
    from chatman.ledger.models import Message

    rows = session.execute(select(Message.contact_id, Message.created_at).order_by(Message.id)).all()
    got = defaultdict(list)
    for contact_id, created in rows:
        got[contact_id].append(created)
    for zone, contact in contacts.items():
        local = [t.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M") for t in got[contact.id]]
        day = people[zone][5:]
        assert local == [f"2027-{day} 10:00", f"2028-{day} 10:00"], zone
    assert undated.id not in got
    assert sorted(sent(twilio_stub)) == sorted(c.phone for c in contacts.values())
    assert all(len(bodies) == 2 for bodies in sent(twilio_stub).values())


def test_a_changed_date_reschedules_and_a_removed_one_ends_the_enrollment(session, drive):
    from chatman.contacts.crud import update_contact

    define(session, renewal="date")
    (template,) = templates(session, "Your plan renews tomorrow")
    contact = make_contact(session, timezone="Asia/Kolkata", attributes={"renewal": "2027-06-15"})
    gone = make_contact(session, timezone="Asia/Kolkata", attributes={"renewal": "2027-06-20"})
    segment = everyone(session)
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "Renewals",
            "kind": "date",
            "include_segments": [segment.id],
            "date_field": {"attribute": "renewal", "offset_days": -1, "at": "09:30", "repeat": "once"},
            "template_id": template,
        },
    )
    session.commit()
    start = datetime(2027, 6, 1, tzinfo=UTC)
    lifecycle.launch(session, campaign.id, now=start)
    session.commit()
    drive(start)
    assert enrollment(session, contact).next_due_at == datetime(2027, 6, 14, 4, 0, tzinfo=UTC)  # 09:30 IST
    update_contact(session, contact.id, {"attributes": {"renewal": "2027-07-01"}}, None)
    update_contact(session, gone.id, {"attributes": {"renewal": None}}, None)
    session.commit()
    drive(start + timedelta(hours=7))  # the next sync sees the changes
    assert enrollment(session, contact).next_due_at == datetime(2027, 6, 30, 4, 0, tzinfo=UTC)
    assert (enrollment(session, gone).status, enrollment(session, gone).exit_reason) == ("exited", "no_date")
