"""Launch pre-flight: the forecast of who is sent the message and who is skipped, and why."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sqlalchemy import func, select

from chatman.campaigns import lifecycle
from chatman.campaigns.preflight import preflight
from chatman.contacts import segments
from chatman.jobs import enqueue_dispatch
from chatman.ledger.models import Message
from chatman.messaging.templates import save_template
from chatman.timeutils import utcnow
from tests.factories import define, make_contact


def mixed_audience(session):
    """40 contacts: 10 ordinary, 5 DND, 5 on +1 numbers, 10 without a city, 10 who wrote
    to us within the last 24 hours (4 of them without a city)."""
    define(session, city="string")
    now = utcnow()
    people = []
    for i in range(10):
        people.append(make_contact(session, name=f"A{i}", attributes={"city": "Pune"}))
    for i in range(5):
        people.append(make_contact(session, name=f"D{i}", attributes={"city": "Pune"}, dnd=True))
    for i in range(5):
        people.append(
            make_contact(session, phone=f"+1415555{i:04d}", name=f"U{i}", attributes={"city": "NYC"})
        )
    for i in range(10):
        people.append(make_contact(session, name=f"N{i}", attributes={"city": ""} if i % 2 else {}))
    for i in range(10):
        person = make_contact(session, name=f"W{i}", attributes={"city": "Goa"} if i >= 4 else {})
        person.last_inbound_at = now - timedelta(hours=3)
        people.append(person)
    everyone = segments.create_segment(session, {"name": "all", "kind": "static"})
    segments.add_members(session, everyone.id, [p.id for p in people])
    session.commit()
    return everyone


def template(session, category="marketing", status="approved", name="offer"):
    return save_template(
        session,
        {
            "name": name,
            "language": "en",
            "category": category,
            "status": status,
            "body": "Hi {{who}}, new in {{city}}",
            "variables": {"who": {"field": "name"}, "city": {"attribute": "city"}},
        },
    )


def test_forecast_matches_what_the_send_then_records(app, session, redis, run_worker):
    everyone = mixed_audience(session)
    campaign = lifecycle.create_campaign(
        session, {"name": "Offer", "template_id": template(session).id, "include_segments": [everyone.id]}
    )
    session.commit()
    report = preflight(session, campaign.id, daily_limit=None, skip_us_marketing=True)
    assert (report.audience, report.eligible) == (40, 16)
    assert report.skipped == {"dnd": 5, "us_marketing": 5, "missing_variable": 14}
    assert report.errors == [] and report.warnings == []

    run = lifecycle.launch(session, campaign.id)
    session.commit()
    enqueue_dispatch(redis, run.id)
    run_worker(SKIP_US_MARKETING="true")
    recorded = Counter(
        dict(
            session.execute(
                select(Message.skip_reason, func.count())
                .where(Message.run_id == run.id)
                .group_by(Message.skip_reason)
            ).all()
        )
    )
    assert recorded.pop(None) == report.eligible
    assert dict(recorded) == report.skipped


def test_free_text_forecasts_the_24_hour_window_and_us_numbers_are_sent_when_allowed(session):
    everyone = mixed_audience(session)
    text = lifecycle.create_campaign(
        session, {"name": "Thanks", "body": "Thanks!", "include_segments": [everyone.id]}
    )
    session.commit()
    report = preflight(session, text.id, daily_limit=None, skip_us_marketing=True)
    assert (report.eligible, report.skipped) == (10, {"dnd": 5, "outside_window": 25})
    offer = lifecycle.create_campaign(
        session, {"name": "Offer", "template_id": template(session).id, "include_segments": [everyone.id]}
    )
    session.commit()
    allowed = preflight(session, offer.id, daily_limit=None, skip_us_marketing=False)
    assert allowed.skipped == {"dnd": 5, "missing_variable": 14} and allowed.eligible == 21


def test_unapproved_template_is_an_error_and_authentication_a_warning(session):
    everyone = mixed_audience(session)
    pending = lifecycle.create_campaign(
        session,
        {
            "name": "P",
            "template_id": template(session, status="pending").id,
            "include_segments": [everyone.id],
        },
    )
    auth = lifecycle.create_campaign(
        session,
        {
            "name": "A",
            "template_id": template(session, category="authentication", name="otp").id,
            "include_segments": [everyone.id],
        },
    )
    session.commit()
    refused = preflight(session, pending.id, daily_limit=None, skip_us_marketing=True)
    assert refused.eligible == 0 and "not approved" in refused.errors[0]
    warned = preflight(session, auth.id, daily_limit=None, skip_us_marketing=True)
    assert warned.errors == [] and "authentication" in warned.warnings[0]


def test_daily_messaging_limit_counts_contacts_already_reached_today(session):
    from tests.factories import make_submitted_run

    everyone = mixed_audience(session)
    campaign = lifecycle.create_campaign(
        session, {"name": "Offer", "template_id": template(session).id, "include_segments": [everyone.id]}
    )
    session.commit()
    assert preflight(session, campaign.id, daily_limit=250, skip_us_marketing=True).warnings == []
    # 240 other people were messaged in the last hours: 240 + 16 eligible > 250
    make_submitted_run(session, 240)
    warnings = preflight(session, campaign.id, daily_limit=250, skip_us_marketing=True).warnings
    assert len(warnings) == 1 and "256 different contacts" in warnings[0] and "250" in warnings[0]
    assert preflight(session, campaign.id, daily_limit=None, skip_us_marketing=True).warnings == []


def test_launch_through_the_api_reports_the_preflight_and_refuses_errors(app, client, auth, session, redis):
    everyone = mixed_audience(session)
    good = lifecycle.create_campaign(
        session, {"name": "Offer", "template_id": template(session).id, "include_segments": [everyone.id]}
    )
    bad = lifecycle.create_campaign(
        session,
        {
            "name": "P",
            "template_id": template(session, status="pending", name="p").id,
            "include_segments": [everyone.id],
        },
    )
    session.commit()
    check = client.get(f"/api/v1/campaigns/{good.id}/preflight", headers=auth)
    assert check.status_code == 200 and check.json["eligible"] == 16
    assert check.json["skipped"] == {"dnd": 5, "us_marketing": 5, "missing_variable": 14}
    launched = client.post(f"/api/v1/campaigns/{good.id}/launch", headers=auth)
    assert launched.status_code == 202 and launched.json["preflight"]["eligible"] == 16
    refused = client.post(f"/api/v1/campaigns/{bad.id}/launch", headers=auth)
    assert refused.status_code == 422 and "not approved" in refused.json["errors"]["preflight"][0]
    assert client.get(f"/api/v1/campaigns/{bad.id}", headers=auth).json["runs"] == []
    assert client.get(f"/api/v1/campaigns/{bad.id}/preflight", headers=auth).status_code == 200
    assert client.get("/api/v1/campaigns/999/preflight", headers=auth).status_code == 404
