"""Recurring campaigns' occurrences: the stated rules for short months, and for the nights
the clocks change in Europe/Berlin and America/New_York, for every kind of rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from chatman.campaigns import lifecycle
from chatman.campaigns.models import CampaignRun
from chatman.campaigns.recurrence import next_occurrences, parse
from chatman.clock import launch_due_occurrences, tick
from chatman.errors import Invalid
from tests.factories import make_audience

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
ZONES = {
    # zone: (spring-forward day, fall-back day) in 2027
    "Europe/Berlin": ("2027-03-28", "2027-10-31"),
    "America/New_York": ("2027-03-14", "2027-11-07"),
}


def local(rule, count):
    zone = ZoneInfo(rule.timezone)
    return [o.astimezone(zone).strftime("%Y-%m-%d %H:%M") for o in next_occurrences(rule, EPOCH, count)]


@pytest.mark.parametrize("zone", ZONES)
def test_monthly_on_the_31st_runs_on_each_months_last_day_for_14_months(zone):
    rule = parse({"every": "month", "start": "2027-01-31", "at": "10:00", "timezone": zone})
    days = [o[:10] for o in local(rule, 14)]
    assert days == [
        "2027-01-31", "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31", "2027-06-30", "2027-07-31",
        "2027-08-31", "2027-09-30", "2027-10-31", "2027-11-30", "2027-12-31", "2028-01-31", "2028-02-29",
    ]  # fmt: skip
    assert {o[11:] for o in local(rule, 14)} == {"10:00"}  # 10:00 local, summer and winter


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("spec", [{"cron": "30 2 * * *"}, {"every": "day", "at": "02:30"}])
def test_a_daily_0230_runs_once_a_day_at_the_end_of_the_gap_and_at_the_first_repeat(zone, spec):
    spring, autumn = ZONES[zone]
    rule = parse({**spec, "start": f"{spring[:8]}{int(spring[8:]) - 1:02d}", "timezone": zone})
    assert (
        local(rule, 3)
        == [
            f"{spring[:8]}{int(spring[8:]) - 1:02d} 02:30",
            f"{spring} 03:00",  # 02:30 does not exist that night: the end of the gap, once
            f"{spring[:8]}{int(spring[8:]) + 1:02d} 02:30",
        ]
    )
    rule = parse({**spec, "start": autumn, "timezone": zone})
    first, second = next_occurrences(rule, EPOCH, 2)
    # New York's repeated hour is 01:00-02:00, so its 02:30 happens once anyway; Berlin's 02:30
    # happens twice, and runs at the first (summer time).
    assert first.astimezone(ZoneInfo(zone)).strftime("%H:%M") == "02:30"
    assert (second - first).total_seconds() == (25 if zone == "Europe/Berlin" else 24) * 3600
    if zone == "Europe/Berlin":
        assert first == datetime(2027, 10, 31, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "spec",
    [
        {"cron": "0 */4 * * *", "count": 3},
        {"every": "week", "weekdays": ["mon", "thu"], "at": "08:15", "until": "2027-12-31"},
    ],
)
def test_a_stored_rule_reads_back_as_the_same_rule(spec):
    rule = parse({**spec, "start": "2027-01-13", "timezone": "Europe/Berlin"})
    assert parse(rule.as_dict()) == rule  # as the clock reads it from the campaign


@pytest.mark.parametrize("zone", ZONES)
def test_a_repeated_local_time_runs_once_at_the_first(zone):
    repeated = "02:30" if zone == "Europe/Berlin" else "01:30"
    _, autumn = ZONES[zone]
    for spec in ({"every": "day", "at": repeated}, {"cron": f"{repeated[3:]} {repeated[:2]} * * *"}):
        rule = parse({**spec, "start": autumn, "timezone": zone, "count": 2})
        first, second = next_occurrences(rule, EPOCH, 5)
        assert first.astimezone(ZoneInfo(zone)).dst().total_seconds() == 3600  # still summer time
        assert (second - first).total_seconds() == 25 * 3600


@pytest.mark.parametrize("zone", ZONES)
def test_weekly_on_weekdays_keeps_its_local_time_across_both_changes(zone):
    rule = parse(
        {"every": "week", "weekdays": ["mon", "thu"], "start": "2027-03-01", "at": "09:00", "timezone": zone}
    )
    times = local(rule, 70)
    assert {t[11:] for t in times} == {"09:00"}
    assert [datetime.fromisoformat(t[:10]).strftime("%a") for t in times[:4]] == ["Mon", "Thu", "Mon", "Thu"]
    assert len(times) == 70 and times[-1] < "2027-12-01"  # 35 weeks, two a week: through November


def test_count_until_interval_and_the_29th_of_february():
    every_15_days = parse(
        {"every": "day", "interval": 15, "start": "2027-01-01", "timezone": "Asia/Kolkata", "count": 3}
    )
    assert local(every_15_days, 10) == ["2027-01-01 09:00", "2027-01-16 09:00", "2027-01-31 09:00"]
    yearly = parse(
        {"every": "year", "start": "2028-02-29", "until": "2032-03-01", "timezone": "Asia/Kolkata"}
    )
    assert [t[:10] for t in local(yearly, 10)] == [
        "2028-02-29",
        "2029-02-28",
        "2030-02-28",
        "2031-02-28",
        "2032-02-29",
    ]
    later = next_occurrences(every_15_days, datetime(2027, 1, 10, tzinfo=UTC), 10)
    assert [o.date().isoformat() for o in later] == ["2027-01-16", "2027-01-31"]


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"every": "fortnight", "start": "2027-01-01", "timezone": "UTC"}, "recurrence.every"),
        ({"start": "2027-01-01", "timezone": "UTC"}, "recurrence.every"),
        ({"every": "day", "cron": "0 9 * * *", "start": "2027-01-01", "timezone": "UTC"}, "recurrence.every"),
        ({"every": "day", "start": "2027-02-30", "timezone": "UTC"}, "recurrence.start"),
        (
            {"every": "day", "start": "2027-01-01", "until": "2026-01-01", "timezone": "UTC"},
            "recurrence.until",
        ),
        ({"every": "day", "start": "2027-01-01", "timezone": "Mars/Base"}, "recurrence.timezone"),
        ({"every": "day", "start": "2027-01-01", "timezone": "UTC", "at": "9:00"}, "recurrence.at"),
        ({"every": "day", "start": "2027-01-01", "timezone": "UTC", "interval": 0}, "recurrence.interval"),
        (
            {"every": "day", "start": "2027-01-01", "timezone": "UTC", "weekdays": ["mon"]},
            "recurrence.weekdays",
        ),
        (
            {"every": "week", "start": "2027-01-01", "timezone": "UTC", "weekdays": ["monday"]},
            "recurrence.weekdays[0]",
        ),
        ({"cron": "61 * * * *", "start": "2027-01-01", "timezone": "UTC"}, "recurrence.cron"),
        ({"cron": "0 9 * * *", "at": "09:00", "start": "2027-01-01", "timezone": "UTC"}, "recurrence.at"),
        ({"every": "day", "start": "2027-01-01", "timezone": "UTC", "count": 0}, "recurrence.count"),
        ({"every": "day", "start": "2027-01-01", "timezone": "UTC", "often": True}, "recurrence.often"),
    ],
)
def test_a_bad_rule_is_refused_naming_its_field(spec, field):
    with pytest.raises(Invalid) as refused:
        parse(spec)
    assert field in refused.value.errors, refused.value.errors


def launched_daily(session, at: str, start: str, zone: str, now: datetime):
    """A running daily campaign to a small audience, launched at `now`."""
    everyone, _ = make_audience(session, 2)
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "Daily",
            "kind": "recurring",
            "body": "hi",
            "include_segments": [everyone.id],
            "recurrence": {"every": "day", "at": at, "start": start, "timezone": zone},
        },
    )
    session.commit()
    assert lifecycle.launch(session, campaign.id, now=now) is None
    session.commit()
    return campaign


def test_the_clock_runs_each_occurrence_once_and_catches_up_by_the_rule(app, session, redis):
    """A daily 02:30 in Berlin across the spring-forward night, ticked every 15 minutes by a
    clock, then by a second clock over the same times; then the clock is down for a while."""
    start = datetime(2027, 3, 25, 23, 0, tzinfo=UTC)
    campaign = launched_daily(session, "02:30", "2027-03-26", "Europe/Berlin", start)
    db = app.extensions["chatman.db"]
    hourly_catch_up = launch_due_occurrences(db, redis, catch_up_s=3600)

    def runs():
        session.expire_all()
        berlin = ZoneInfo("Europe/Berlin")
        rows = session.scalars(select(CampaignRun).order_by(CampaignRun.occurrence_at))
        return [(r.occurrence_at.astimezone(berlin).strftime("%m-%d %H:%M"), r.status) for r in rows]

    for _clock in range(2):  # the second pass is another clock, or a restart, over the same times
        now = start
        while now < datetime(2027, 3, 29, 12, 0, tzinfo=UTC):
            tick(redis, [hourly_catch_up], now)
            now += timedelta(minutes=15)
    assert runs() == [
        ("03-26 02:30", "freezing"),
        ("03-27 02:30", "freezing"),
        ("03-28 03:00", "freezing"),  # 02:30 does not exist that night
        ("03-29 02:30", "freezing"),
    ]
    # Down from 29 March noon until 3.5 hours after the 31 March occurrence (00:30 UTC): the
    # latest is older than the hour allowed, so both it and the one before are missed.
    tick(redis, [hourly_catch_up], datetime(2027, 3, 31, 4, 0, tzinfo=UTC))
    assert runs()[-2:] == [("03-30 02:30", "skipped"), ("03-31 02:30", "skipped")]
    # With four hours allowed, the latest missed one runs and the older is recorded missed.
    four_hours = launch_due_occurrences(db, redis, catch_up_s=4 * 3600)
    tick(redis, [four_hours], datetime(2027, 4, 2, 4, 0, tzinfo=UTC))
    assert runs()[-2:] == [("04-01 02:30", "skipped"), ("04-02 02:30", "freezing")]
    skipped = session.scalars(select(CampaignRun.context).where(CampaignRun.status == "skipped")).all()
    assert skipped == [{"skipped": "missed"}] * 3

    # A clock that read the campaign before the others moved it on (a stale next occurrence)
    # starts nothing again: each occurrence has one run.
    from sqlalchemy import update

    from chatman.campaigns.models import Campaign

    before = runs()
    session.execute(
        update(Campaign)
        .where(Campaign.id == campaign.id)
        .values(next_occurrence_at=datetime(2027, 3, 27, 0, 30, tzinfo=UTC))
    )
    session.commit()
    assert four_hours(datetime(2027, 4, 2, 4, 0, tzinfo=UTC)) == 0  # called bare: an error would show
    assert runs() == before


def test_a_recurring_campaign_through_the_api(client, auth):
    segment = client.post("/api/v1/segments", headers=auth, json={"name": "all"}).json["id"]
    rule = {"every": "month", "start": "2031-01-31", "at": "10:00", "timezone": "Asia/Kolkata"}
    body = {"name": "Renewal", "kind": "recurring", "body": "Time to renew", "include_segments": [segment]}
    refused = client.post(
        "/api/v1/campaigns", headers=auth, json={**body, "recurrence": {**rule, "every": "fortnight"}}
    )
    assert refused.status_code == 422 and "recurrence.every" in refused.json["errors"]
    missing = client.post("/api/v1/campaigns", headers=auth, json=body)
    assert missing.status_code == 422 and "recurrence" in missing.json["errors"]
    made = client.post("/api/v1/campaigns", headers=auth, json={**body, "recurrence": rule})
    assert made.status_code == 201 and made.json["recurrence"]["every"] == "month", made.json
    url = f"/api/v1/campaigns/{made.json['id']}"
    launched = client.post(f"{url}/launch", headers=auth)
    assert launched.status_code == 202 and launched.json["status"] == "running"
    assert launched.json["next_occurrence_at"] == "2031-01-31T04:30:00+00:00" and launched.json["runs"] == []
    upcoming = client.get(f"{url}/schedule", headers=auth, query_string={"limit": 3}).json
    assert [o["local"] for o in upcoming["occurrences"]] == [
        "2031-01-31T10:00:00+05:30",
        "2031-02-28T10:00:00+05:30",
        "2031-03-31T10:00:00+05:30",
    ]
    once = client.post(
        f"{url}/schedule", headers=auth, json={"send_at": "2031-01-01T09:00:00", "timezone": "UTC"}
    )
    assert once.status_code == 409  # it runs on its recurrence


def test_resume_skips_what_the_pause_passed_over_unless_asked_to_catch_up(app, session, redis):
    day = datetime(2027, 5, 1, 8, 0, tzinfo=UTC)
    campaign = launched_daily(session, "09:00", "2027-05-01", "UTC", day)
    occurrences = launch_due_occurrences(app.extensions["chatman.db"], redis, catch_up_s=3600)

    def runs():
        session.expire_all()
        rows = session.scalars(select(CampaignRun).order_by(CampaignRun.occurrence_at))
        return [(f"{r.occurrence_at:%d %H:%M}", r.status, (r.context or {}).get("skipped")) for r in rows]

    assert occurrences(day + timedelta(hours=1)) == 1  # 1 May 09:00
    lifecycle.set_status(session, campaign.id, "pause", now=day + timedelta(hours=2))
    session.commit()
    assert occurrences(day + timedelta(days=1, hours=1)) == 0  # paused: 2 May passes
    lifecycle.set_status(session, campaign.id, "resume", now=day + timedelta(days=3, hours=4))
    session.commit()
    assert occurrences(day + timedelta(days=3, hours=4)) == 0  # 2-4 May are not caught up
    assert runs() == [
        ("01 09:00", "freezing", None),
        ("02 09:00", "skipped", "paused"),
        ("03 09:00", "skipped", "paused"),
        ("04 09:00", "skipped", "paused"),
    ]
    assert occurrences(day + timedelta(days=4, hours=1)) == 1  # 5 May: on again

    # Paused again over 6 and 7 May; resumed half an hour after the 7 May one, asking to catch
    # up: the latest runs (within the hour allowed), the one before is recorded missed.
    lifecycle.set_status(session, campaign.id, "pause", now=day + timedelta(days=4, hours=2))
    session.commit()
    lifecycle.set_status(
        session, campaign.id, "resume", catch_up=True, now=day + timedelta(days=6, hours=1.5)
    )
    session.commit()
    assert occurrences(day + timedelta(days=6, hours=1.5)) == 1
    assert runs()[-3:] == [
        ("05 09:00", "freezing", None),
        ("06 09:00", "skipped", "missed"),
        ("07 09:00", "freezing", None),
    ]


@pytest.mark.parametrize(("catch_up_h", "runs_latest"), [(1, True), (0.25, False)])
def test_a_clock_down_for_three_hours_follows_the_catch_up_rule(app, session, redis, catch_up_h, runs_latest):
    """An hourly campaign, its clock down from 10:05 to 13:30: 11:00, 12:00 and 13:00 were
    missed. The latest (30 minutes old) runs if the allowed age covers it; the rest are
    recorded as skipped, missed, and the clock goes on at 14:00."""
    start = datetime(2027, 6, 1, 9, 30, tzinfo=UTC)
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "Hourly",
            "kind": "recurring",
            "body": "hi",
            "include_segments": [make_audience(session, 2)[0].id],
            "recurrence": {"cron": "0 * * * *", "start": "2027-06-01", "timezone": "Europe/Berlin"},
        },
    )
    session.commit()
    lifecycle.launch(session, campaign.id, now=start)
    session.commit()
    task = launch_due_occurrences(app.extensions["chatman.db"], redis, catch_up_s=catch_up_h * 3600)
    assert task(datetime(2027, 6, 1, 10, 5, tzinfo=UTC)) == 1  # 10:00, then the clock stops
    assert task(datetime(2027, 6, 1, 13, 30, tzinfo=UTC)) == (1 if runs_latest else 0)
    session.expire_all()
    runs = session.execute(
        select(CampaignRun.occurrence_at, CampaignRun.status, CampaignRun.context).order_by(
            CampaignRun.occurrence_at
        )
    ).all()
    got = [(f"{at:%H:%M}", status, (context or {}).get("skipped")) for at, status, context in runs]
    assert got == [
        ("10:00", "freezing", None),
        ("11:00", "skipped", "missed"),
        ("12:00", "skipped", "missed"),
        ("13:00", "freezing", None) if runs_latest else ("13:00", "skipped", "missed"),
    ]
    assert lifecycle.get_campaign(session, campaign.id).next_occurrence_at == datetime(
        2027, 6, 1, 14, 0, tzinfo=UTC
    )
