"""A campaign of 5,000 recipients with every outcome, built through the ledger's own moves
(claim, skip, hold, hand-over answers, status callbacks, inbound replies, link clicks); its
report, time series, drill-down lists, export and retargeting are checked against figures
this test computes from its own plan."""

from __future__ import annotations

import csv
import io
import random
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from chatman.contacts.models import Contact, SegmentMember
from chatman.ledger import counters, sending, series
from chatman.ledger.models import Message, MessageEvent
from chatman.ledger.status import StatusUpdate, record_many
from chatman.messaging import links
from chatman.messaging.inbound import InboundEvent
from chatman.reports import retention
from chatman.reports.verify import verify
from chatman.triggers.inbound import InboundPolicy, handle_inbound
from chatman.triggers.matcher import TriggerIndex
from chatman.triggers.optout import OptWords
from tests.conftest import SECRET_KEY
from tests.factories import make_submitted_run

N = 5000
T0 = datetime(2026, 11, 10, 18, 20, tzinfo=UTC)
# Statuses are applied long after they were accepted: a report timed by the apply would show it.
APPLIED = T0 + timedelta(days=20)
POLICY = InboundPolicy(OptWords.of(("STOP",), ("START",), "OPT_OUT"), "bye", "welcome back")
RANK = {"sent": 1, "delivered": 2, "read": 3}
CODES = ["63016", "131047", "131049", "63049", "63024"]
URLS = ["https://shop.example/sale", "https://shop.example/help"]
ZONES = ["Asia/Kolkata", "America/New_York"]
RANGE_START = datetime(2026, 11, 9)


class Plan:
    """What the test did to each message, and so what each figure must be."""

    def __init__(self) -> None:
        self.final: dict[int, str] = {}
        self.skipped: dict[int, str] = {}
        self.code: dict[int, str | None] = {}
        self.submitted: set[int] = set()
        self.times: dict[str, dict[int, datetime]] = defaultdict(dict)
        self.taps: dict[str, set[int]] = defaultdict(set)
        self.opted_out: set[int] = set()
        self.link_clicks: dict[int, set[int]] = defaultdict(set)
        self.clicks = 0
        self.contact: dict[int, int] = {}

    def first(self, metric: str, message_id: int, at: datetime) -> None:
        known = self.times[metric].get(message_id)
        self.times[metric][message_id] = at if known is None else min(known, at)

    def having(self, name: str) -> set[int]:
        everyone = set(self.final)
        if name == "targeted":
            return everyone
        if name in ("sent", "delivered", "read"):
            return {m for m, s in self.final.items() if RANK.get(s, 0) >= RANK[name]}
        if name in ("failed", "held", "unconfirmed", "skipped"):
            return {m for m, s in self.final.items() if s == name}
        if name.startswith("skipped:"):
            return {m for m, r in self.skipped.items() if r == name[8:]}
        if name.startswith("failed:"):
            return {m for m, s in self.final.items() if s == "failed" and self.code[m] == name[7:]}
        if name == "submitted":
            return set(self.submitted)
        if name in ("replied", "clicked"):
            return set(self.times[name])
        if name.startswith("tapped:"):
            return self.taps[name[7:]]
        if name == "opted_out":
            return set(self.opted_out)
        if name.startswith("link:"):
            return self.link_clicks[int(name[5:])]
        raise AssertionError(name)


def build(session) -> tuple[int, Plan]:
    rng = random.Random(13)
    campaign, run, step, messages = make_submitted_run(session, N, submitted=False)
    plan = Plan()
    # A name a spreadsheet would run as a formula, for the export.
    session.get(Contact, messages[0].contact_id).name = '=HYPERLINK("http://evil")'
    ids = [m.id for m in messages]
    plan.contact = {m.id: m.contact_id for m in messages}
    sending.claim(session, ids, "batch", T0)
    rows = {
        m.id: sending.ClaimedRow(m.id, m.campaign_id, m.run_id, m.step_id, m.contact_id, 0) for m in messages
    }
    groups: dict[str, list[int]] = defaultdict(list)
    for message_id in ids:
        groups[
            rng.choices(
                ["dnd", "missing_variable", "held", "handover_failed", "unconfirmed", "submitted"],
                [3, 2, 1, 2, 1, 91],
            )[0]
        ].append(message_id)
    for reason in ("dnd", "missing_variable"):
        sending.skip(session, "batch", [rows[i] for i in groups[reason]], reason)
        for i in groups[reason]:
            plan.final[i], plan.skipped[i] = "skipped", reason
    sending.defer(session, "batch", [rows[i] for i in groups["held"]], T0 + timedelta(days=1))
    plan.final.update({i: "held" for i in groups["held"]})
    failures = [
        sending.Failure(rows[i], "63049", "Meta chose not to deliver") for i in groups["handover_failed"]
    ]
    for i in groups["handover_failed"]:
        plan.final[i], plan.code[i] = "failed", "63049"
        plan.first("failed", i, T0)
    sid = {i: f"SM{i:032d}" for i in groups["submitted"]}
    sending.record_results(
        session,
        "batch",
        submitted=[(rows[i], sid[i]) for i in groups["submitted"]],
        failed=failures,
        unconfirmed=[rows[i] for i in groups["unconfirmed"]],
        now=T0,
    )
    plan.final.update({i: "unconfirmed" for i in groups["unconfirmed"]})
    plan.submitted = set(groups["submitted"])
    session.commit()

    events: list[StatusUpdate] = []
    for i in groups["submitted"]:
        sent = T0 + timedelta(minutes=rng.uniform(0, 48 * 60))
        if rng.random() < 0.1:
            code = rng.choice(CODES)
            happened = [("sent", sent)] if rng.random() < 0.7 else []
            happened.append(("undelivered", sent + timedelta(minutes=rng.uniform(1, 90))))
            plan.final[i], plan.code[i] = "failed", code
        else:
            delivered = sent + timedelta(minutes=rng.uniform(0, 120))
            read = delivered + timedelta(minutes=rng.uniform(0, 600))
            happened = [("sent", sent), ("delivered", delivered), ("read", read)][: rng.choice([1, 2, 3, 3])]
            if len(happened) > 1 and rng.random() < 0.1:  # the sent callback never came
                happened = happened[1:]
            if len(happened) == 3 and rng.random() < 0.1:  # delivered accepted after read
                happened[1] = ("delivered", happened[2][1] + timedelta(minutes=5))
            plan.final[i] = max((s for s, _ in happened), key=RANK.__getitem__)
            code = None
        for status, at in happened:
            if status == "undelivered":
                plan.first("failed", i, at)
            else:
                for implied in RANK:
                    if RANK[implied] <= RANK[status]:
                        plan.first(implied, i, at)
            event = StatusUpdate(
                sid[i], status, error_code=code if status == "undelivered" else None, received_at=at
            )
            events += [event] * (2 if rng.random() < 0.05 else 1)
    events.sort(key=lambda e: e.received_at)
    for start in range(0, len(events), 700):
        record_many(session, events[start : start + 700], now=APPLIED)
        session.commit()

    tracker = links.Tracker(session, "http://testserver", SECRET_KEY)
    link_ids = [tracker.link_id(campaign.id, url) for url in URLS]
    session.commit()
    inbound: list[tuple[datetime, int, str | None, str | None]] = []
    clicks: list[tuple[datetime, int, int]] = []
    reached = [i for i in groups["submitted"] if RANK.get(plan.final[i], 0) >= RANK["delivered"]]
    for i in reached:
        base = plan.times["delivered"][i]
        if rng.random() < 0.2:
            inbound.append((base + timedelta(minutes=rng.uniform(1, 600)), i, "thanks!", None))
        if rng.random() < 0.1:
            inbound.append(
                (base + timedelta(minutes=rng.uniform(1, 600)), i, None, rng.choice(["YES", "NO"]))
            )
        if rng.random() < 0.03:
            inbound.append((base + timedelta(minutes=rng.uniform(1, 600)), i, "STOP", None))
        for _ in range(rng.choice([0, 0, 0, 0, 0, 1, 2])):
            clicks.append((base + timedelta(minutes=rng.uniform(1, 900)), i, rng.choice(link_ids)))
    phones = {contact_id: phone for contact_id, phone in session.execute(select(Contact.id, Contact.phone))}
    for n, (at, i, body, payload) in enumerate(sorted(inbound)):
        event = InboundEvent(
            provider_sid=f"IN{n:08d}",
            phone=phones[plan.contact[i]],
            body=body,
            button_payload=payload,
            replied_sid=sid[i] if payload else None,
        )
        handle_inbound(session, event, POLICY, TriggerIndex([]), now=at)
        if n % 100 == 99:
            session.commit()
        plan.first("replied", i, at)
        if payload:
            plan.taps[payload].add(i)
        if body == "STOP":
            plan.opted_out.add(i)
    for at, i, link_id in sorted(clicks):
        assert (
            links.follow(session, SECRET_KEY, links.token_for(SECRET_KEY, link_id, i), now=at)
            == URLS[link_ids.index(link_id)]
        )
        plan.first("clicked", i, at)
        plan.link_clicks[link_id].add(i)
        plan.clicks += 1
    session.commit()
    return campaign.id, plan


def test_a_campaign_of_5000_reports_every_outcome(client, auth, session):
    """One campaign built once per backend, then every view of it checked."""
    campaign_id, plan = build(session)
    report = check_counters_and_rates(client, auth, campaign_id, plan)
    for zone in ZONES:
        check_time_series(client, auth, campaign_id, plan, zone)
    check_drill_down(client, auth, campaign_id, plan, report)
    check_export(client, auth, campaign_id, plan)
    for outcome, exclude in [
        (["read"], ["replied"]),
        (["failed:63016"], []),
        (["tapped:YES"], []),
        (["clicked"], []),
    ]:
        check_retarget(client, auth, session, campaign_id, plan, outcome, exclude)
    # Erasing a contact who tapped and opted out changes no figure and no recount.
    erased = next(iter(plan.opted_out & set().union(*plan.taps.values())))
    assert client.delete(f"/api/v1/contacts/{plan.contact[erased]}", headers=auth).status_code == 204
    check_squash_and_trim_change_nothing(client, auth, session, campaign_id, report)


def check_counters_and_rates(client, auth, campaign_id, plan) -> dict:
    report = client.get(f"/api/v1/campaigns/{campaign_id}/report", headers=auth).get_json()
    counts = report["counts"]
    for name in ("targeted", "skipped", "held", "submitted", "sent", "delivered", "read", "failed"):
        assert counts[name] == len(plan.having(name)), name
    for name in ("unconfirmed", "replied", "clicked", "opted_out"):
        assert counts[name] == len(plan.having(name)), name
    assert counts["clicks"] == plan.clicks
    assert report["skipped"] == {
        "dnd": len(plan.having("skipped:dnd")),
        "missing_variable": len(plan.having("skipped:missing_variable")),
    }
    by_code = {c["code"]: c["count"] for c in report["failures"]["codes"]}
    assert by_code == {
        code: len(plan.having(f"failed:{code}"))
        for code in {*CODES, "63049"}
        if plan.having(f"failed:{code}")
    }
    assert report["failures"]["limited_by_meta"] == len(
        plan.having("failed:63049") | plan.having("failed:131049")
    )
    assert report["failures"]["outside_window"] == len(
        plan.having("failed:63016") | plan.having("failed:131047")
    )
    assert report["failures"]["other"] == len(plan.having("failed:63024"))
    assert next(c for c in report["failures"]["codes"] if c["code"] == "63016")["meaning"].startswith(
        "Outside the 24-hour"
    )
    assert report["taps"] == {p: len(ids) for p, ids in plan.taps.items()}
    assert {link["url"]: link["clicked"] for link in report["links"]} == {
        URLS[n]: len(ids) for n, ids in enumerate(plan.link_clicks[k] for k in sorted(plan.link_clicks))
    }
    sent, delivered = len(plan.having("sent")), len(plan.having("delivered"))
    assert report["rates"] == {
        "delivered": round(delivered / sent, 4),
        "read": round(len(plan.having("read")) / delivered, 4),
        "replied": round(len(plan.having("replied")) / delivered, 4),
        "clicked": round(len(plan.having("clicked")) / delivered, 4),
    }
    assert report["formulas"]["read"] == "read / delivered"
    (run,) = report["runs"]
    assert run["counts"] == counts and run["steps"][0]["counts"] == counts
    assert report["steps"][0]["counts"] == counts
    # The campaign list shows the same figures.
    listed = client.get("/api/v1/campaigns", headers=auth).get_json()["items"][0]
    assert listed["counters"]["read"] == counts["read"] and listed["rates"] == report["rates"]
    return report


def check_squash_and_trim_change_nothing(client, auth, session, campaign_id, report) -> None:
    assert verify(session, campaign_id).differences == []
    # Squashed, and with the raw events trimmed, every figure stays what it was.
    while counters.squash(session) or series.squash(session):
        session.commit()
    assert retention.trim_events(session, APPLIED + timedelta(days=1), batch=1000) == 1000
    while retention.trim_events(session, APPLIED + timedelta(days=1)):
        pass
    session.commit()
    assert session.scalar(select(MessageEvent.id).limit(1)) is None
    again = client.get(f"/api/v1/campaigns/{campaign_id}/report", headers=auth).get_json()
    assert again == report
    assert verify(session, campaign_id).differences == []


def expected_buckets(times, zone: str, granularity: str) -> Counter[str]:
    tz = ZoneInfo(zone)
    out: Counter[str] = Counter()
    for at in times:
        local = at.astimezone(tz)
        if granularity == "hour":
            start = local.replace(minute=0, second=0, microsecond=0)
        elif granularity == "half_hour":
            start = local.replace(minute=local.minute - local.minute % 30, second=0, microsecond=0)
        elif granularity == "day":
            start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        else:  # the first month starts with the range
            start = max(
                local.replace(day=1, hour=0, minute=0, second=0, microsecond=0),
                RANGE_START.replace(tzinfo=tz),
            )
        out[start.isoformat()] += 1
    return out


def check_time_series(client, auth, campaign_id, plan, zone) -> None:
    for granularity in ("half_hour", "hour", "day", "month"):
        answer = client.get(
            "/api/v1/reports/timeseries",
            query_string={
                "campaign_id": campaign_id,
                "timezone": zone,
                "preset": "custom",
                "start": "2026-11-09",
                "end": "2026-11-30",
                "granularity": granularity,
            },
            headers=auth,
        ).get_json()
        (charted,) = answer["series"]
        for metric in ("sent", "delivered", "read", "failed", "replied", "clicked"):
            got = {b: n for b, n in zip(answer["buckets"], charted[metric], strict=True) if n}
            assert got == expected_buckets(plan.times[metric].values(), zone, granularity), (
                metric,
                granularity,
            )
        assert answer["buckets"][0] == RANGE_START.replace(tzinfo=ZoneInfo(zone)).isoformat()


def check_drill_down(client, auth, campaign_id, plan, report) -> None:
    outcomes = ["targeted", "skipped:dnd", "held", "delivered", "read", "replied", "clicked", "opted_out"]
    outcomes += ["failed:63016", "limited_by_meta", "tapped:YES", f"link:{report['links'][0]['link_id']}"]
    for outcome in outcomes:
        listed, after = [], 0
        while after is not None:
            page = client.get(
                f"/api/v1/campaigns/{campaign_id}/recipients",
                query_string={"outcome": outcome, "after": after, "limit": 500},
                headers=auth,
            ).get_json()
            listed += [item["message_id"] for item in page["items"]]
            after = page["next_after"]
        if outcome == "limited_by_meta":
            want = plan.having("failed:63049") | plan.having("failed:131049")
            assert len(listed) == report["failures"]["limited_by_meta"]
        else:
            want = plan.having(outcome)
        assert listed == sorted(want), outcome
    page = client.get(
        f"/api/v1/campaigns/{campaign_id}/recipients",
        query_string={"outcome": "read", "not": "replied", "limit": 500},
        headers=auth,
    ).get_json()
    assert [i["message_id"] for i in page["items"]] == sorted(plan.having("read") - plan.having("replied"))[
        :500
    ]
    bad = client.get(f"/api/v1/campaigns/{campaign_id}/recipients?outcome=bounced", headers=auth)
    assert bad.status_code == 422 and "unknown outcome" in bad.get_json()["message"]


def check_retarget(client, auth, session, campaign_id, plan, outcome, exclude) -> None:
    name = f"next {outcome} {exclude}"
    answer = client.post(
        f"/api/v1/campaigns/{campaign_id}/retarget",
        json={"name": name, "outcome": outcome, "not": exclude},
        headers=auth,
    )
    assert answer.status_code == 201, answer.get_json()
    want = set.intersection(*(plan.having(o) for o in outcome)) - set().union(
        *(plan.having(o) for o in exclude)
    )
    members = set(
        session.scalars(
            select(SegmentMember.contact_id).where(
                SegmentMember.segment_id == answer.get_json()["segment_id"]
            )
        )
    )
    assert members == {plan.contact[m] for m in want} and answer.get_json()["members"] == len(want)
    again = client.post(
        f"/api/v1/campaigns/{campaign_id}/retarget", json={"name": name, "outcome": outcome}, headers=auth
    )
    assert again.status_code == 409


def check_export(client, auth, campaign_id, plan) -> None:
    with client.get(f"/api/v1/campaigns/{campaign_id}/export.csv", headers=auth) as answer:
        assert answer.status_code == 200 and answer.mimetype == "text/csv"
        rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert len(rows) == N
    assert {int(r["message_id"]): r["status"] for r in rows} == plan.final
    first = rows[0]
    assert first["name"] == '\'=HYPERLINK("http://evil")'
    assert all(r["phone"].startswith("+") and r["phone"][1:].isdigit() for r in rows)
    failed = next(r for r in rows if r["error_code"] == "63016")
    assert failed["error_meaning"].startswith("Outside the 24-hour")
    tapped = next(r for r in rows if r["button"] == "YES")
    assert int(tapped["message_id"]) in plan.taps["YES"]


def test_a_timestamp_from_the_provider_times_the_status(session):
    campaign, run, step, messages = make_submitted_run(session, 1)
    provider_time = T0 + timedelta(hours=3)
    record_many(
        session,
        [
            StatusUpdate(
                messages[0].provider_sid,
                "read",
                payload={"timestamp": str(int(provider_time.timestamp()))},
                received_at=T0 + timedelta(hours=5),
            )
        ],
        now=APPLIED,
    )
    session.commit()
    session.expire_all()
    message = session.get(Message, messages[0].id)
    assert message.read_at == message.delivered_at == message.sent_at == provider_time
    assert verify(session, campaign.id).differences == []


def test_presets_cut_whole_days_of_the_viewers_zone():
    from chatman.reports.timeseries import edges, window

    zone = ZoneInfo("America/New_York")
    now = datetime(2026, 3, 9, 3, 0, tzinfo=UTC)  # 23:00 on the 8th in New York
    start, end = window("today", zone, now)
    assert (start.isoformat(), end.isoformat()) == ("2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00")
    # The day the clocks go forward has 23 hours.
    assert len(edges(start, end, "hour", zone)) == 23
    assert window("yesterday", zone, now)[0].date() == date(2026, 3, 7)
    assert [d.date() for d in window("last_7_days", zone, now)] == [date(2026, 3, 2), date(2026, 3, 9)]
    assert [d.date() for d in window("this_month", zone, now)] == [date(2026, 3, 1), date(2026, 4, 1)]
    assert [d.date() for d in window("last_month", zone, now)] == [date(2026, 2, 1), date(2026, 3, 1)]
    assert [d.date() for d in window("last_30_days", zone, now)] == [date(2026, 2, 7), date(2026, 3, 9)]
