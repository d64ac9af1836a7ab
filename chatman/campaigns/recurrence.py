"""When a recurring campaign runs: every N days, weeks (on given weekdays), months or years at
a local time in a named timezone, or a cron expression; from a start date to an optional end
date or count. Stated rules, the same for every rule kind:

- day D of a month in a month shorter than D is that month's last day (Jan 31 -> Feb 28 ->
  Mar 31); Feb 29 in a year without one is Feb 28. Each occurrence is counted from the start,
  so one short month does not move the later ones;
- a local time the spring-forward night skips runs at the end of the gap (02:30 -> 03:00 in
  Europe/Berlin), once;
- a local time the fall-back night has twice runs once, at the first of the two.

Cron expressions are read by cronsim, which keeps the same two rules (croniter fires a
repeated 02:30 twice).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError
from dateutil.relativedelta import relativedelta

from chatman.contacts.fields import validate_timezone
from chatman.errors import Invalid
from chatman.timeutils import run_instant

UNITS = ("day", "week", "month", "year")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z")
MAX_INTERVAL = 1000
MAX_COUNT = 100_000
FIELD = "recurrence"


@dataclass(frozen=True)
class Recurrence:
    timezone: str
    start: date
    every: str | None = None  # one of UNITS, or None with `cron`
    interval: int = 1
    weekdays: tuple[int, ...] = ()  # every week: 0 = Monday; empty = the start's weekday
    at: time = time(9, 0)
    cron: str | None = None
    until: date | None = None  # the last day an occurrence may fall on, inclusive
    count: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The JSON form `parse` reads back: a cron rule without the fields it has no use for."""
        rule = (
            {"cron": self.cron}
            if self.cron is not None
            else {
                "every": self.every,
                "interval": self.interval,
                "weekdays": [WEEKDAYS[d] for d in self.weekdays],
                "at": self.at.strftime("%H:%M"),
            }
        )
        return {
            "timezone": self.timezone,
            "start": self.start.isoformat(),
            **rule,
            "until": self.until.isoformat() if self.until else None,
            "count": self.count,
        }


def parse(spec: Any) -> Recurrence:
    """A recurrence from its JSON form; Invalid naming each field at fault."""
    if not isinstance(spec, Mapping):
        raise Invalid(FIELD, "an object: every (day, week, month, year) or cron, with timezone and start")
    errors: dict[str, list[str]] = {}

    def fail(field: str, reason: str) -> None:
        errors.setdefault(f"{FIELD}.{field}", []).append(reason)

    unknown = set(spec) - {
        "timezone",
        "start",
        "every",
        "interval",
        "weekdays",
        "at",
        "cron",
        "until",
        "count",
    }
    for key in sorted(unknown):
        fail(key, "unknown field")
    zone = spec.get("timezone")
    try:
        validate_timezone(zone if isinstance(zone, str) else "", f"{FIELD}.timezone")
    except Invalid:
        fail("timezone", "an IANA timezone name, e.g. Asia/Kolkata")
    start = _date(spec.get("start"), "start", fail, required=True)
    until = _date(spec.get("until"), "until", fail)
    if start and until and until < start:
        fail("until", "the end date is before the start date")
    every, cron = spec.get("every"), spec.get("cron")
    if (every is None) == (cron is None):
        fail("every", "give either every (day, week, month, year) or cron")
    if every is not None and every not in UNITS:
        fail("every", f"one of {', '.join(UNITS)}")
    interval = spec.get("interval", 1)
    if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= MAX_INTERVAL:
        fail("interval", f"a whole number from 1 to {MAX_INTERVAL}")
    weekdays: list[int] = []
    for i, day in enumerate(spec.get("weekdays") or []):
        if day not in WEEKDAYS:
            fail(f"weekdays[{i}]", f"one of {', '.join(WEEKDAYS)}")
        else:
            weekdays.append(WEEKDAYS.index(day))
    if weekdays and every != "week":
        fail("weekdays", "weekdays go with every: week")
    at = spec.get("at", "09:00")
    if not isinstance(at, str) or not HHMM.match(at):
        fail("at", "a local time HH:MM, e.g. 09:30")
    if cron is not None:
        if "at" in spec:
            fail("at", "a cron expression gives its own time")
        if not isinstance(cron, str) or len(cron) > 100 or not _cron_ok(cron):
            fail("cron", "a cron expression of five fields, e.g. 30 2 * * * (02:30 every day)")
    count = spec.get("count")
    if count is not None and (
        isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT
    ):
        fail("count", f"a whole number from 1 to {MAX_COUNT}")
    if errors:
        raise Invalid.many(errors)
    return Recurrence(
        timezone=zone,
        start=start,
        every=every,
        interval=interval,
        weekdays=tuple(sorted(set(weekdays))),
        at=time.fromisoformat(at) if cron is None else time(0, 0),
        cron=cron,
        until=until,
        count=count,
    )


def occurrences(rule: Recurrence, after: datetime | None = None) -> Iterator[datetime]:
    """The rule's occurrences in UTC, in order, each once; only those later than `after`."""
    for n, instant in enumerate(_instants(rule), start=1):
        if rule.count is not None and n > rule.count:
            return
        if rule.until is not None and instant.astimezone(ZoneInfo(rule.timezone)).date() > rule.until:
            return
        if after is None or instant > after:
            yield instant


def next_occurrences(rule: Recurrence, after: datetime, limit: int) -> list[datetime]:
    found = []
    for instant in occurrences(rule, after):
        found.append(instant)
        if len(found) == limit:
            break
    return found


def _instants(rule: Recurrence) -> Iterator[datetime]:
    zone = ZoneInfo(rule.timezone)
    if rule.cron is not None:
        start = datetime.combine(rule.start, time(0, 0), zone) - timedelta(seconds=1)
        for moment in CronSim(rule.cron, start):
            yield moment.astimezone(UTC)
        return
    last = None
    for day in _days(rule):
        instant = run_instant(datetime.combine(day, rule.at), rule.timezone)
        if instant != last:  # a gap could make two wall times one instant: once
            yield instant
        last = instant


def _days(rule: Recurrence) -> Iterator[date]:
    k = 0
    while True:
        if rule.every == "day":
            yield rule.start + timedelta(days=k * rule.interval)
        elif rule.every == "week" and rule.weekdays:
            monday = rule.start - timedelta(days=rule.start.weekday()) + timedelta(weeks=k * rule.interval)
            for weekday in rule.weekdays:
                day = monday + timedelta(days=weekday)
                if day >= rule.start:
                    yield day
        elif rule.every == "week":
            yield rule.start + timedelta(weeks=k * rule.interval)
        elif rule.every == "month":  # relativedelta clamps to the month's last day
            yield rule.start + relativedelta(months=k * rule.interval)
        else:
            yield rule.start + relativedelta(years=k * rule.interval)
        k += 1


def _date(value: Any, field: str, fail, required: bool = False) -> date | None:
    if value is None and not required:
        return None
    try:
        if isinstance(value, str) and len(value) == 10:
            return date.fromisoformat(value)
    except ValueError:
        pass
    fail(field, "required: a date YYYY-MM-DD" if value is None else "a date YYYY-MM-DD")
    return None


def _cron_ok(expression: str) -> bool:
    try:
        CronSim(expression, datetime(2000, 1, 1, tzinfo=UTC))
    except (CronSimError, ValueError, TypeError):
        return False
    return len(expression.split()) == 5
