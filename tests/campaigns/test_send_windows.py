"""Send windows and the marketing cap, the send policy's rules of time: driven by a
controllable clock (no sleeping), counted at the provider stub."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from chatman import jobs
from chatman.campaigns import lifecycle
from chatman.campaigns.dispatch import freeze_run
from chatman.campaigns.preflight import preflight
from chatman.errors import Invalid
from chatman.ledger import sending
from chatman.ledger.counters import stored
from chatman.ledger.models import Message
from chatman.messaging import policy, send_window
from chatman.timeutils import pinned
from tests.campaigns.clocked import everyone, sent, templates
from tests.factories import make_contact

WINDOW = {"from": "09:00", "to": "20:00"}


def launch(session, redis, campaign_id: int, now: datetime) -> None:
    """Launch a broadcast at `now` and run its jobs, the wall clock read as `now`."""
    with pinned(now):
        run = lifecycle.launch(session, campaign_id, now=now)
        session.commit()
        jobs.enqueue_dispatch(redis, run.id)
        jobs.run_worker(redis, burst=True)
    session.expire_all()


def broadcast(session, name: str, template_id: int, **extra) -> int:
    campaign = lifecycle.create_campaign(
        session,
        {"name": name, "template_id": template_id, "include_segments": [everyone_id(session)], **extra},
    )
    session.commit()
    return campaign.id


def everyone_id(session) -> int:
    from chatman.contacts.models import Segment

    found = session.scalar(select(Segment.id).where(Segment.name == "everyone"))
    return found if found is not None else everyone(session).id


def sent_at(session, contact) -> list[datetime]:
    """When each message to this contact was handed to the provider."""
    return list(
        session.scalars(
            select(Message.handed_at)
            .where(Message.contact_id == contact.id, Message.handed_at.is_not(None))
            .order_by(Message.id)
        )
    )


def counters_of(session, campaign_id: int) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (_, _, _, metric), value in stored(session, campaign_id).items():
        totals[metric] = totals.get(metric, 0) + value
    return {k: v for k, v in totals.items() if v}


def test_each_contact_gets_the_message_inside_their_own_window(session, redis, drive, twilio_stub):
    (template,) = templates(session, "Our sale starts today")
    kolkata = make_contact(session, timezone="Asia/Kolkata")
    angeles = make_contact(session, timezone="America/Los_Angeles")
    london = make_contact(session, timezone="Europe/London")
    campaign_id = broadcast(session, "Sale", template, send_window=WINDOW)
    # 16:00 UTC on a Wednesday: 21:30 in Kolkata (closed until the morning), 08:00 in Los
    # Angeles (opens in an hour), 16:00 in London (open).
    start = datetime(2027, 1, 13, 16, 0, tzinfo=UTC)
    launch(session, redis, campaign_id, start)

    assert sorted(sent(twilio_stub)) == [london.phone]
    held = dict(
        session.execute(select(Message.contact_id, Message.hold_until).where(Message.status == "held")).all()
    )
    assert held == {
        angeles.id: datetime(2027, 1, 13, 17, 0, tzinfo=UTC),  # 09:00 in Los Angeles
        kolkata.id: datetime(2027, 1, 14, 3, 30, tzinfo=UTC),  # 09:00 the next day in Kolkata
    }
    assert counters_of(session, campaign_id)["held"] == 2
    assert lifecycle.get_campaign(session, campaign_id).status == "running"  # not over while some wait

    now = start
    while now <= start + timedelta(hours=14):
        drive(now)
        now += timedelta(minutes=15)

    got = sent(twilio_stub)
    assert sorted(got) == sorted([london.phone, angeles.phone, kolkata.phone])
    assert all(len(bodies) == 1 for bodies in got.values())
    for contact in (kolkata, angeles, london):
        (when,) = sent_at(session, contact)
        local = when.astimezone(ZoneInfo(contact.timezone)).time()
        assert time(9, 0) <= local < time(20, 0), contact.timezone
    # The held ones went as their window opened, not at some later tick.
    assert sent_at(session, angeles) == [datetime(2027, 1, 13, 17, 0, tzinfo=UTC)]
    assert sent_at(session, kolkata) == [datetime(2027, 1, 14, 3, 30, tzinfo=UTC)]
    counts = counters_of(session, campaign_id)
    assert "held" not in counts and counts["submitted"] == 3
    assert lifecycle.get_campaign(session, campaign_id).status == "completed"


def test_the_preflight_tells_how_many_would_wait_for_the_window(session):
    (template,) = templates(session, "Sale")
    for zone in ("Asia/Kolkata", "America/Los_Angeles", "Europe/London", None):
        make_contact(session, timezone=zone)
    campaign_id = broadcast(session, "Sale", template, send_window=WINDOW)
    # 16:00 UTC: closed in Kolkata (21:30) and Los Angeles (08:00), open in London, and for the
    # contact without a zone (the campaign's: UTC).
    report = preflight(session, campaign_id, None, False, now=datetime(2027, 1, 13, 16, 0, tzinfo=UTC))
    assert (report.eligible, report.held) == (4, 2)
    assert any(
        "2 of the 4 are outside the send window" in w and "Wed 09:00 in America/Los_Angeles" in w
        for w in report.warnings
    ), report.warnings


def test_a_window_on_weekdays_holds_a_saturday_message_until_monday(session, redis, drive, twilio_stub):
    (template,) = templates(session, "Weekly digest")
    contact = make_contact(session, timezone="Europe/Berlin")
    weekdays = {**WINDOW, "weekdays": ["mon", "tue", "wed", "thu", "fri"]}
    campaign_id = broadcast(session, "Digest", template, send_window=weekdays)
    saturday = datetime(2027, 1, 16, 10, 0, tzinfo=UTC)  # 11:00 in Berlin: inside the hours
    launch(session, redis, campaign_id, saturday)
    assert sent(twilio_stub) == {}
    monday = datetime(2027, 1, 18, 8, 0, tzinfo=UTC)  # 09:00 in Berlin
    drive(monday - timedelta(minutes=15))
    assert sent(twilio_stub) == {}
    drive(monday)
    assert sent(twilio_stub) == {contact.phone: ["Weekly digest"]}


def test_pause_keeps_held_messages_held_and_cancel_skips_them(session, redis, drive, twilio_stub):
    (template,) = templates(session, "Flash sale")
    make_contact(session, timezone="Asia/Kolkata")
    campaign_id = broadcast(session, "Flash", template, send_window=WINDOW)
    night = datetime(2027, 1, 13, 18, 0, tzinfo=UTC)  # 23:30 in Kolkata
    launch(session, redis, campaign_id, night)
    lifecycle.set_status(session, campaign_id, "pause")
    session.commit()
    opens = datetime(2027, 1, 14, 3, 30, tzinfo=UTC)
    drive(opens)
    assert sent(twilio_stub) == {}
    assert session.scalar(select(Message.status)) == "held"
    lifecycle.set_status(session, campaign_id, "cancel")
    session.commit()
    drive(opens + timedelta(minutes=15))
    assert sent(twilio_stub) == {}
    assert session.execute(select(Message.status, Message.skip_reason)).one() == ("skipped", "cancelled")
    assert counters_of(session, campaign_id) == {"targeted": 1, "skipped": 1, "skipped:cancelled": 1}


def test_a_marketing_cap_of_one_a_day_skips_the_second_campaign_as_capped(
    session, redis, drive, in_process_jobs, twilio_stub
):
    from tests.conftest import twilio_env

    in_process_jobs(**twilio_env(twilio_stub), MARKETING_CAP="1/day")
    first, second, third = templates(session, "Sale 1", "Sale 2", "Sale 3", category="marketing")
    (receipt,) = templates(session, "Your order shipped")
    contact = make_contact(session, timezone="Asia/Kolkata")
    morning = datetime(2027, 1, 13, 4, 0, tzinfo=UTC)  # 09:30 in Kolkata
    launch(session, redis, broadcast(session, "First", first), morning)
    capped_id = broadcast(session, "Second", second)
    receipt_id = broadcast(session, "Receipt", receipt)
    # The pre-flight says so before the launch; a utility template is exempt.
    cap, later = policy.Cap(1, "day"), morning + timedelta(hours=6)
    forecast = preflight(session, capped_id, None, False, now=later, cap=cap)
    assert (forecast.eligible, forecast.skipped) == (0, {"capped": 1})
    assert preflight(session, receipt_id, None, False, now=later, cap=cap).eligible == 1
    launch(session, redis, capped_id, later)
    launch(session, redis, receipt_id, morning + timedelta(hours=7))
    # 18:45 UTC is 00:15 the next day in Kolkata: a new calendar day on the contact's clock.
    launch(session, redis, broadcast(session, "Third", third), datetime(2027, 1, 13, 18, 45, tzinfo=UTC))

    assert sent(twilio_stub) == {contact.phone: ["Sale 1", "Your order shipped", "Sale 3"]}
    assert counters_of(session, capped_id) == {"targeted": 1, "skipped": 1, "skipped:capped": 1}


def test_a_capped_drip_step_is_skipped_and_the_drip_goes_on(session, drive, in_process_jobs, twilio_stub):
    from tests.conftest import twilio_env

    in_process_jobs(**twilio_env(twilio_stub), MARKETING_CAP="1/24h")
    one, two, three = templates(session, "one", "two", "three", category="marketing")
    contact = make_contact(session, timezone="UTC")
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "Nurture",
            "kind": "drip",
            "include_segments": [everyone(session).id],
            "steps": [
                {"template_id": one},
                {"template_id": two, "wait": {"hours": 6}},  # within 24 h of step one: capped
                {"template_id": three, "wait": {"hours": 20}},
            ],
        },
    )
    session.commit()
    start = datetime(2027, 1, 13, 8, 0, tzinfo=UTC)
    lifecycle.launch(session, campaign.id, now=start)
    session.commit()
    now = start
    while now <= start + timedelta(hours=30):
        drive(now)
        now += timedelta(hours=1)
    assert sent(twilio_stub) == {contact.phone: ["one", "three"]}
    reasons = list(session.scalars(select(Message.skip_reason).order_by(Message.id)))
    assert reasons == [None, "capped", None]


def test_two_batches_checking_one_contact_at_once_cannot_both_pass_the_cap(app, session):
    """The cap's check holds the contact until the hand-over commits: a second sender asking
    meanwhile waits, then sees the first one's message."""
    (template,) = templates(session, "Promo", category="marketing")
    contact = make_contact(session, timezone="UTC")
    ids = []
    for name in ("A", "B"):
        run = lifecycle.launch(session, broadcast(session, name, template))
        session.commit()
        freeze_run(session, run.id)
        ids.append(session.scalar(select(Message.id).where(Message.run_id == run.id)))
    cap, now = policy.Cap(1, "day"), datetime.now(UTC)
    db = app.extensions["chatman.db"]
    first, second = db.sessionmaker(), db.sessionmaker()
    answer: dict[str, set[int]] = {}
    checker = threading.Thread(
        target=lambda: answer.update(second=policy.capped(second, [(ids[1], contact.id, "UTC")], now, cap))
    )
    try:
        for s, message_id, token in ((first, ids[0], "token-a"), (second, ids[1], "token-b")):
            sending.claim(s, [message_id], token, now)
            s.commit()
        assert policy.capped(first, [(ids[0], contact.id, "UTC")], now, cap) == set()
        checker.start()
        checker.join(timeout=1.0)  # it must be waiting for the first sender: give it the chance not to
        assert "second" not in answer
        assert sending.hand(first, "token-a", [ids[0]], now, marketing=[ids[0]]) == {ids[0]}
        first.commit()
        checker.join()
        assert answer["second"] == {ids[1]}
    finally:
        first.rollback()
        first.close()
        if checker.is_alive():
            checker.join()
        second.rollback()
        second.close()


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"from": "9am", "to": "20:00"}, "send_window.from"),
        ({"to": "20:00"}, "send_window.from"),
        ({"from": "20:00", "to": "09:00"}, "send_window"),
        ({"from": "09:00", "to": "20:00", "weekdays": ["funday"]}, "send_window.weekdays"),
        ({"from": "09:00", "to": "20:00", "weekdays": []}, "send_window.weekdays"),
        ({"from": "09:00", "to": "20:00", "hours": 3}, "send_window"),
    ],
)
def test_bad_windows_are_refused_with_the_field_named(raw, field):
    with pytest.raises(Invalid) as refused:
        send_window.parse(raw)
    assert refused.value.field == field


def test_a_window_opening_in_the_spring_forward_gap_opens_at_its_end():
    window = send_window.parse({"from": "02:30", "to": "05:00"})
    # 28 March 2027, Europe/Berlin: 02:00 -> 03:00. At 01:00 local the window opens at 03:00.
    night = datetime(2027, 3, 28, 0, 0, tzinfo=UTC)
    assert window.opens_at(night, "Europe/Berlin") == datetime(2027, 3, 28, 1, 0, tzinfo=UTC)
    assert window.opens_at(datetime(2027, 3, 28, 1, 30, tzinfo=UTC), "Europe/Berlin") is None


def test_the_api_keeps_a_window_and_refuses_a_bad_one(client, auth, session):
    audience = {"body": "hi", "include_segments": [everyone(session).id]}
    created = client.post(
        "/api/v1/campaigns",
        json={"name": "Windowed", **audience, "send_window": {**WINDOW, "weekdays": ["Mon", "fri"]}},
        headers=auth,
    )
    assert created.status_code == 201, created.json
    assert created.json["send_window"] == {"from": "09:00", "to": "20:00", "weekdays": ["mon", "fri"]}
    overnight = {"from": "21:00", "to": "08:00"}
    bad = client.post(
        "/api/v1/campaigns", json={"name": "Bad", **audience, "send_window": overnight}, headers=auth
    )
    assert bad.status_code == 422
    assert "send_window" in bad.json["errors"], bad.json
    url = f"/api/v1/campaigns/{created.json['id']}"
    cleared = client.patch(url, json={"send_window": None}, headers=auth)
    assert cleared.status_code == 200 and cleared.json["send_window"] is None
