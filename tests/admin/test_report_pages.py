"""The campaign report screen: its figures are the domain report's, its chart data is the time
series, its drill-down lists exactly an outcome's recipients (escaped), its export is the CSV,
and retargeting makes a segment (never without a CSRF token)."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from chatman.api.reports import full_report
from chatman.campaigns import lifecycle
from chatman.campaigns.dispatch import freeze_run
from chatman.contacts.models import Contact, Segment, SegmentMember
from chatman.ledger.status import StatusUpdate, record_many
from chatman.messaging.inbound import InboundEvent
from chatman.reports import funnel, timeseries
from chatman.timeutils import utcnow
from chatman.triggers.inbound import InboundPolicy, handle_inbound
from chatman.triggers.matcher import TriggerIndex
from chatman.triggers.optout import OptWords
from tests.factories import make_audience, make_submitted_run

EVIL = "<img src=x onerror=alert(1)>"
POLICY = InboundPolicy(OptWords.of(("STOP",), ("START",), "OPT_OUT"), "bye", "welcome back")
# What happens to each of the six messages: its statuses, and whether its contact replies.
PLAN = [
    (["sent", "delivered", "read"], False),
    (["sent", "delivered", "read"], False),
    (["sent", "delivered", "read"], True),
    (["sent", "delivered"], False),
    (["undelivered"], False),
    (["sent"], False),
]


def sent_campaign(session):
    """A campaign of six: two read and not replied (one of them named like a script), one read
    and replied, one delivered, one failed (63016), one only sent; all within the last hour."""
    campaign, run, step, messages = make_submitted_run(session, len(PLAN))
    session.get(Contact, messages[0].contact_id).name = EVIL
    session.commit()
    at = utcnow() - timedelta(minutes=30)
    events = []
    for i, (statuses, _) in enumerate(PLAN):
        for n, status in enumerate(statuses):
            code = "63016" if status == "undelivered" else None
            events.append(
                StatusUpdate(
                    messages[i].provider_sid, status, error_code=code, received_at=at + timedelta(seconds=n)
                )
            )
    record_many(session, events, now=at)
    session.commit()
    for i, (_, replies) in enumerate(PLAN):
        if replies:
            phone = session.get(Contact, messages[i].contact_id).phone
            event = InboundEvent(provider_sid=f"IN{i:08d}", phone=phone, body="thanks!")
            handle_inbound(session, event, POLICY, TriggerIndex([]), now=at + timedelta(minutes=1))
    session.commit()
    return campaign, messages


def message_rows(html: str) -> list[int]:
    return [int(m) for m in re.findall(r'data-message="(\d+)"', html)]


def stat(html: str, name: str) -> int:
    match = re.search(rf'data-count="{name}">.*?<b>(\d+)</b>', html, re.S)
    assert match, name
    return int(match.group(1))


def test_report_page_shows_the_funnel_of_campaign_report(admin, session):
    campaign, _ = sent_campaign(session)
    expected = funnel.campaign_report(session, campaign.id)
    assert expected["counts"]["read"] == 3 and expected["counts"]["failed"] == 1

    answer = admin.get(f"/admin/campaigns/{campaign.id}/report")

    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    for name in ("targeted", "sent", "delivered", "read", "replied", "failed"):
        assert stat(html, name) == expected["counts"][name], name
    # Rates with their formulas as help.
    assert "read / delivered" in html and "75.0%" in html  # read 3 / delivered 4
    # The failure table: the code, its meaning, the count, and its group's line.
    failure = re.search(r'data-code="63016">(.*?)</tr>', html, re.S).group(1)
    assert expected["failures"]["codes"][0]["meaning"].split(":")[0] in failure
    assert re.search(r'data-group="outside_window">.*?>1</a>', html, re.S)
    # Both charts have a canvas and get their data from a URL, not from inline script.
    assert html.count("<canvas") == 2
    assert f'data-url="/admin/campaigns/{campaign.id}/report.json"' in html
    assert "<script>" not in html
    # A drill-down link for "read but not replied", and a retarget form with its token.
    assert f"/admin/campaigns/{campaign.id}/recipients?outcome=read&amp;not=replied" in html
    assert 'name="csrf_token"' in html and f'action="/admin/campaigns/{campaign.id}/retarget"' in html


def test_report_of_a_campaign_that_sent_nothing_says_what_to_do(admin, session):
    campaign, *_ = make_submitted_run(session, 0, submitted=False)

    html = admin.get(f"/admin/campaigns/{campaign.id}/report").get_data(as_text=True)

    assert "Nothing sent yet: launch the campaign to see its report" in html
    assert "<canvas" not in html


def test_chart_data_is_the_funnel_and_the_time_series_in_the_viewers_zone(admin, session):
    campaign, _ = sent_campaign(session)
    admin.set_cookie("tz", "Asia/Kolkata", path="/admin")

    answer = admin.get(f"/admin/campaigns/{campaign.id}/report.json?preset=last_7_days&granularity=day")

    assert answer.status_code == 200 and answer.mimetype == "application/json"
    data = answer.get_json()
    assert data["funnel"] == {
        "labels": ["targeted", "sent", "delivered", "read", "replied", "clicked"],
        "values": [6, 5, 4, 3, 1, 0],
    }
    series = data["timeseries"]
    assert series["timezone"] == "Asia/Kolkata" and series["granularity"] == "day"
    assert len(series["buckets"]) == 7 and series["buckets"][0].endswith("+05:30")
    assert sum(series["series"][0]["sent"]) == 5
    assert sum(series["series"][0]["failed"]) == 1 and sum(series["series"][0]["replied"]) == 1
    direct = timeseries.timeseries(session, [campaign.id], "Asia/Kolkata", "last_7_days", "day")
    assert series == direct


def test_chart_data_refuses_an_unknown_preset(admin, session):
    campaign, _ = sent_campaign(session)

    answer = admin.get(f"/admin/campaigns/{campaign.id}/report.json?preset=forever")

    assert answer.status_code == 422
    assert "preset" in answer.get_json()["errors"]


def test_drill_down_lists_exactly_the_read_not_replied_recipients(admin, session):
    campaign, messages = sent_campaign(session)
    url = f"/admin/campaigns/{campaign.id}/recipients?outcome=read&not=replied"

    html = admin.get(url).get_data(as_text=True)

    assert message_rows(html) == [messages[0].id, messages[1].id]
    # A page at a time: the next page starts after the last row shown.
    first = admin.get(url + "&limit=1").get_data(as_text=True)
    assert message_rows(first) == [messages[0].id]
    next_url = re.search(r'href="([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    assert f"after={messages[0].id}" in next_url
    second = admin.get(next_url).get_data(as_text=True)
    assert message_rows(second) == [messages[1].id]
    assert 'rel="next"' not in admin.get(re.sub(r"after=\d+", f"after={messages[1].id}", next_url)).get_data(
        as_text=True
    )


def test_a_contact_name_is_shown_as_text_in_the_recipients_list(admin, session):
    campaign, _ = sent_campaign(session)

    html = admin.get(f"/admin/campaigns/{campaign.id}/recipients?outcome=read").get_data(as_text=True)

    assert EVIL not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_export_is_a_csv_of_the_recipients(admin, session):
    campaign, messages = sent_campaign(session)

    answer = admin.get(f"/admin/campaigns/{campaign.id}/export.csv")

    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert "attachment" in answer.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert [int(r["message_id"]) for r in rows] == [m.id for m in messages]
    assert [r["status"] for r in rows] == ["read", "read", "read", "delivered", "failed", "sent"]
    assert rows[4]["error_code"] == "63016" and rows[2]["reply"] == "thanks!"
    only = admin.get(f"/admin/campaigns/{campaign.id}/export.csv?outcome=read&not=replied")
    assert len(list(csv.DictReader(io.StringIO(only.get_data(as_text=True))))) == 2


def test_retarget_makes_a_segment_of_the_outcomes_contacts(admin, session):
    campaign, messages = sent_campaign(session)

    answer = admin.post(
        f"/admin/campaigns/{campaign.id}/retarget",
        data={"outcome": "read", "not": "replied", "name": "Read, no reply", "csrf_token": admin.csrf},
    )

    assert answer.status_code == 302, answer.get_data(as_text=True)
    segment_id = int(re.fullmatch(r"/admin/segments/(\d+)", answer.headers["Location"]).group(1))
    session.expire_all()
    assert session.get(Segment, segment_id).name == "Read, no reply"
    members = session.scalars(select(SegmentMember.contact_id).where(SegmentMember.segment_id == segment_id))
    assert set(members) == {messages[0].contact_id, messages[1].contact_id}
    segment_page = admin.get(answer.headers["Location"]).get_data(as_text=True)
    assert "Segment Read, no reply made with 2 contacts." in segment_page


def test_retarget_without_a_csrf_token_is_refused_and_makes_nothing(admin, session):
    campaign, _ = sent_campaign(session)

    answer = admin.post(f"/admin/campaigns/{campaign.id}/retarget", data={"outcome": "read"})

    assert answer.status_code == 400
    assert answer.mimetype == "text/html"
    assert session.scalar(select(func.count()).select_from(Segment)) == 0


def test_retarget_without_an_outcome_says_so(admin, session):
    campaign, _ = sent_campaign(session)

    answer = admin.post(f"/admin/campaigns/{campaign.id}/retarget", data={"csrf_token": admin.csrf})

    assert answer.status_code == 422 and "outcome" in answer.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Segment)) == 0


@pytest.mark.parametrize("suffix", ["report", "recipients?outcome=read", "export.csv"])
def test_an_unknown_campaign_is_a_404_page(admin, session, suffix):
    answer = admin.get(f"/admin/campaigns/999999/{suffix}")

    assert answer.status_code == 404
    assert answer.mimetype == "text/html"
    assert "<h1>" in answer.get_data(as_text=True)


def test_the_page_and_the_api_show_the_same_runs(admin, client, auth, session):
    campaign, _ = sent_campaign(session)
    api = client.get(f"/api/v1/campaigns/{campaign.id}/report", headers=auth).get_json()
    (run,) = api["runs"]
    assert run["counts"]["targeted"] == 6 and api["variants"] == []

    html = admin.get(f"/admin/campaigns/{campaign.id}/report").get_data(as_text=True)

    row = re.search(rf'data-run="{run["run_id"]}">(.*?)</tr>', html, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
    figures = ("targeted", "sent", "delivered", "read", "replied", "clicked", "failed", "skipped")
    assert cells[2:10] == [str(run["counts"][name]) for name in figures]
    assert cells[10] == "75.0%"


def test_a_campaign_with_variants_shows_them_side_by_side(admin, session):
    everyone, _ = make_audience(session, 40)
    campaign = lifecycle.create_campaign(
        session,
        {
            "name": "A/B",
            "include_segments": [everyone.id],
            "variants": [{"body": "Plain offer", "percent": 50}, {"body": "Bold offer", "percent": 50}],
            "ab_test": {"test_percent": 50, "judge_by": "read", "after_hours": 4},
        },
    )
    run = lifecycle.launch(session, campaign.id)
    session.commit()
    freeze_run(session, run.id)
    compared = {v["label"]: v for v in full_report(session, campaign.id)["variants"]}
    assert set(compared) == {"A", "B"} and all(v["counts"]["targeted"] for v in compared.values())

    html = admin.get(f"/admin/campaigns/{campaign.id}/report").get_data(as_text=True)

    assert "Judged by the read rate (read / delivered)" in html
    for label, variant in compared.items():
        row = re.search(rf'data-variant="{label}">(.*?)</tr>', html, re.S).group(1)
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
        assert cells[:3] == [label, f"{variant['percent']}%", str(variant["counts"]["targeted"])]
