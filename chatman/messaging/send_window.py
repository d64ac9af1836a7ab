"""A campaign's send window: the hours and weekdays its messages may arrive, in the contact's
own time.

"09:00-20:00, Monday to Friday" is read on each contact's clock (their timezone, else the
campaign's): a message that falls outside it waits, held, for the next opening, and goes
then. Local times go through `timeutils.run_instant`, so an opening at a time the clocks skip
that night (the spring-forward gap) is the end of the gap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from chatman.errors import Invalid
from chatman.timeutils import run_instant

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HHMM = "%H:%M"


@dataclass(frozen=True)
class SendWindow:
    start: time
    end: time
    weekdays: tuple[int, ...] = tuple(range(7))  # Monday is 0, as date.weekday() counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.start.strftime(HHMM),
            "to": self.end.strftime(HHMM),
            "weekdays": [WEEKDAYS[d] for d in self.weekdays],
        }

    def _span(self, day: date, zone: str) -> tuple[datetime, datetime]:
        return (
            run_instant(datetime.combine(day, self.start), zone),
            run_instant(datetime.combine(day, self.end), zone),
        )

    def opens_at(self, now: datetime, zone: str) -> datetime | None:
        """None if a message may arrive at `now` (UTC) in `zone`; else when the window next
        opens there (UTC)."""
        today = now.astimezone(ZoneInfo(zone)).date()
        for offset in range(8):
            day = today + timedelta(days=offset)
            if day.weekday() not in self.weekdays:
                continue
            start, end = self._span(day, zone)
            if now < start:
                return start
            if now < end:
                return None
        raise AssertionError("a window with a weekday opens within a week")


def parse(raw: Mapping[str, Any] | None, field: str = "send_window") -> SendWindow | None:
    """A window from the API's {"from": "09:00", "to": "20:00", "weekdays": ["mon", ...]}
    (weekdays optional: every day); None for no window."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise Invalid(field, 'hours to send in, e.g. {"from": "09:00", "to": "20:00"}')
    unknown = set(raw) - {"from", "to", "weekdays"}
    if unknown:
        raise Invalid(field, f"unknown key(s) {', '.join(sorted(unknown))}: use from, to and weekdays")
    bounds = []
    for key in ("from", "to"):
        try:
            bounds.append(datetime.strptime(str(raw[key]), HHMM).time())
        except KeyError:
            raise Invalid(f"{field}.{key}", 'a time of day as HH:MM, e.g. "09:00"') from None
        except ValueError:
            raise Invalid(
                f"{field}.{key}", f'{raw[key]!r} is not a time of day as HH:MM, e.g. "09:00"'
            ) from None
    start, end = bounds
    if start >= end:
        raise Invalid(
            field,
            f"the window must open before it closes, the same day: {start:%H:%M} is not before {end:%H:%M}",
        )
    days = raw.get("weekdays", list(WEEKDAYS))
    if not isinstance(days, list) or not days or any(str(d).lower()[:3] not in WEEKDAYS for d in days):
        raise Invalid(f"{field}.weekdays", f"a non-empty list of days from {', '.join(WEEKDAYS)}")
    return SendWindow(start, end, tuple(sorted({WEEKDAYS.index(str(d).lower()[:3]) for d in days})))


def from_stored(stored: Mapping[str, Any] | None) -> SendWindow | None:
    return parse(stored) if stored else None
