"""The one place that reads the wall clock, so tests and replays can pin time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_pinned: datetime | None = None


def utcnow() -> datetime:
    return _pinned if _pinned is not None else datetime.now(UTC)


@contextmanager
def pinned(at: datetime) -> Iterator[None]:
    """Read the wall clock as `at` in this process while the block runs: a test drives the
    clock's tasks and the jobs they start through a simulated day without sleeping."""
    global _pinned
    before, _pinned = _pinned, at
    try:
        yield
    finally:
        _pinned = before


class NonexistentTime(ValueError):
    """A wall-clock time that the clocks skip (the spring-forward gap) in that timezone."""

    def __init__(self, wall: datetime, zone: str, gap_start: datetime, gap_end: datetime) -> None:
        super().__init__(
            f"{wall:%Y-%m-%d %H:%M} does not exist in {zone}: that night the clocks go from "
            f"{gap_start:%H:%M} straight to {gap_end:%H:%M}"
        )
        self.gap_end = gap_end


def local_to_utc(wall: datetime, zone: str) -> datetime:
    """The instant a naive wall-clock time names in `zone`, by one rule for every schedule:

    - a time that exists twice (the autumn fall-back hour) is the first of the two;
    - a time that does not exist (the spring-forward gap) raises NonexistentTime, which says
      when the gap ends, so a caller can refuse it or move to that first real instant.
    """
    tz = ZoneInfo(zone)
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if instant.astimezone(tz).replace(tzinfo=None) == wall:
        return instant
    # In the gap: zoneinfo reads it with the offset from before the change (an instant after
    # it) or, with fold=1, from after (an instant before it). The change lies between them.
    before, after = wall.replace(tzinfo=tz, fold=1).astimezone(UTC), instant
    old_offset = before.astimezone(tz).utcoffset()
    while after - before > timedelta(seconds=1):
        middle = before + (after - before) / 2
        if middle.astimezone(tz).utcoffset() == old_offset:
            before = middle
        else:
            after = middle
    change = after.replace(microsecond=0)
    local = change.astimezone(tz)
    raise NonexistentTime(wall, zone, (change + old_offset).replace(tzinfo=None), local.replace(tzinfo=None))


def run_instant(wall: datetime, zone: str) -> datetime:
    """When a repeating schedule (a recurrence, a drip wait, a date-field fire) runs for a
    wall-clock time: by `local_to_utc`, with a time in the spring-forward gap moved to the end
    of the gap (the schedule still runs that day, once)."""
    try:
        return local_to_utc(wall, zone)
    except NonexistentTime as gap:
        return local_to_utc(gap.gap_end, zone)


def zone_of(contact_zone: str | None, campaign_zone: str | None) -> str:
    """Whose clock a contact's local times are read on: theirs, else the campaign's, else UTC."""
    return contact_zone or campaign_zone or "UTC"
