"""Recurring campaigns' occurrences: the stated rules for short months, and for the nights
the clocks change in Europe/Berlin and America/New_York, for every kind of rule."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from chatman.campaigns.recurrence import next_occurrences, parse
from chatman.errors import Invalid

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
