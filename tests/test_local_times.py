"""One rule for wall-clock times in a timezone, on the days the clocks change: a time that
exists twice is the first of the two; one that does not exist is said to be missing, with
when the gap ends."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chatman.timeutils import NonexistentTime, local_to_utc

CHANGES = [
    # zone, spring-forward day, a time repeated on the fall-back day, its first instant
    ("Europe/Berlin", "2027-03-28", "2027-10-31T02:30", "2027-10-31T00:30:00+00:00"),
    ("America/New_York", "2027-03-14", "2027-11-07T01:30", "2027-11-07T05:30:00+00:00"),
]


@pytest.mark.parametrize("zone, spring, repeated, first", CHANGES)
def test_the_clock_changes_in_both_directions(zone, spring, repeated, first):
    with pytest.raises(NonexistentTime) as gap:
        local_to_utc(datetime.fromisoformat(f"{spring}T02:30"), zone)
    assert gap.value.gap_end == datetime.fromisoformat(f"{spring}T03:00")
    assert "go from 02:00 straight to 03:00" in str(gap.value)
    # Just before and at the end of the gap, the times exist, a minute apart.
    before = local_to_utc(datetime.fromisoformat(f"{spring}T01:59"), zone)
    after = local_to_utc(datetime.fromisoformat(f"{spring}T03:00"), zone)
    assert (after - before).total_seconds() == 60
    # A time the fall-back day has twice, an hour apart, is the first of the two.
    assert local_to_utc(datetime.fromisoformat(repeated), zone) == datetime.fromisoformat(first)
    assert local_to_utc(datetime.fromisoformat(repeated), zone).tzinfo is UTC


def test_a_one_time_schedule_in_the_gap_is_refused_not_moved(client, auth):
    segment = client.post("/api/v1/segments", headers=auth, json={"name": "s"}).json["id"]
    campaign = client.post(
        "/api/v1/campaigns", headers=auth, json={"name": "c", "body": "hi", "include_segments": [segment]}
    ).json["id"]
    answer = client.post(
        f"/api/v1/campaigns/{campaign}/schedule",
        headers=auth,
        json={"send_at": "2031-03-30T02:30:00", "timezone": "Europe/Berlin"},
    )
    assert answer.status_code == 422
    assert "does not exist in Europe/Berlin" in answer.json["errors"]["send_at"][0]
    assert client.get(f"/api/v1/campaigns/{campaign}", headers=auth).json["status"] == "draft"
    autumn = client.post(
        f"/api/v1/campaigns/{campaign}/schedule",
        headers=auth,
        json={"send_at": "2031-10-26T02:30:00", "timezone": "Europe/Berlin"},
    )
    assert autumn.status_code == 200 and autumn.json["send_at"] == "2031-10-26T00:30:00+00:00"  # the first
