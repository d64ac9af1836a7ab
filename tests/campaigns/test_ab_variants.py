"""A/B variants: deterministic assignment, a test group first, the winner to the rest once."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from chatman import clock
from chatman.campaigns import lifecycle, variants
from chatman.campaigns.models import CampaignRun, CampaignStep
from chatman.contacts import segments
from chatman.jobs import enqueue_dispatch
from chatman.ledger.models import Message
from chatman.ledger.status import StatusUpdate, record_many
from chatman.messaging.simulator import SimulatorProvider
from chatman.messaging.templates import save_template
from tests.factories import make_contact

T = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def template(session, name: str, body: str) -> int:
    saved = save_template(
        session,
        {"name": name, "language": "en", "category": "marketing", "status": "approved", "body": body},
    )
    session.commit()
    return saved.id


def audience(session, n: int) -> tuple[int, list[int]]:
    segment = segments.create_segment(session, {"name": "all", "kind": "static"})
    ids = [make_contact(session).id for _ in range(n)]
    segments.add_members(session, segment.id, ids)
    session.commit()
    return segment.id, ids


def test_a_test_group_goes_first_and_the_winner_reaches_the_rest_once(
    app, client, auth, session, redis, run_worker
):
    segment_id, contacts = audience(session, 400)
    a, b = template(session, "a", "Plain offer"), template(session, "b", "Bold offer")
    created = client.post(
        "/api/v1/campaigns",
        json={
            "name": "A/B",
            "include_segments": [segment_id],
            "variants": [{"template_id": a, "percent": 50}, {"template_id": b, "percent": 50}],
            "ab_test": {"test_percent": 20, "judge_by": "read", "after_hours": 4},
        },
        headers=auth,
    )
    assert created.status_code == 201, created.get_json()
    campaign = created.get_json()
    assert [v["label"] for v in campaign["variants"]] == ["A", "B"]
    step_of = {v["label"]: v["step_id"] for v in campaign["variants"]}
    run = lifecycle.launch(session, campaign["id"], now=T)
    session.commit()
    enqueue_dispatch(redis, run.id)
    run_worker()

    # The test group only: the same contacts whatever the order, each on its own variant.
    group = {c for c in contacts if variants.share(campaign["id"], c, "test") < 2000}
    rows = session.execute(select(Message.contact_id, Message.step_id, Message.provider_sid)).all()
    assert {r.contact_id for r in rows} == group and 40 < len(group) < 120
    campaign_steps = list(session.scalars(select(CampaignStep).order_by(CampaignStep.position)))
    for row in rows:
        assert row.step_id == variants.assign(campaign["id"], row.contact_id, campaign_steps).id
    assert {r.step_id for r in rows} == set(step_of.values())
    session.expire_all()
    assert session.get(CampaignRun, run.id).status == "testing"
    assert lifecycle.get_campaign(session, campaign["id"]).status == "running"

    # B's messages are read, A's only delivered: B wins by read rate.
    events = [
        StatusUpdate(r.provider_sid, "read" if r.step_id == step_of["B"] else "delivered", received_at=T)
        for r in rows
    ]
    record_many(session, events, now=T + timedelta(hours=1))
    session.commit()

    decide = clock.decide_ab_tests(app.extensions["chatman.db"], redis)
    assert decide(T + timedelta(hours=3, minutes=59)) == 0  # not yet: the test has 4 hours
    assert decide(T + timedelta(hours=4)) == 1
    assert decide(T + timedelta(hours=4, minutes=1)) == 0  # picked once
    run_worker()

    session.expire_all()
    rows = session.execute(select(Message.contact_id, Message.step_id)).all()
    per_contact = Counter(r.contact_id for r in rows)
    assert set(per_contact) == set(contacts) and set(per_contact.values()) == {1}
    rest = [r for r in rows if r.contact_id not in group]
    assert rest and {r.step_id for r in rest} == {step_of["B"]}
    sent = SimulatorProvider(redis).sent()
    assert len(sent) == len(contacts) == len({m["to"] for m in sent})
    assert sum(m["body"] == "Bold offer" for m in sent) == len(rest) + sum(
        r.step_id == step_of["B"] for r in rows if r.contact_id in group
    )
    finished = session.get(CampaignRun, run.id)
    assert finished.status == "completed" and finished.context["ab"]["winner"] == "B"
    assert lifecycle.get_campaign(session, campaign["id"]).status == "completed"

    report = client.get(f"/api/v1/campaigns/{campaign['id']}/report", headers=auth).get_json()
    by_label = {v["label"]: v for v in report["variants"]}
    tested_a = sum(1 for r in rows if r.contact_id in group and r.step_id == step_of["A"])
    assert by_label["A"]["counts"]["targeted"] == tested_a
    assert by_label["B"]["counts"]["targeted"] == len(contacts) - tested_a
    assert by_label["A"]["judged_by"] == "read" and by_label["A"]["rate"] == 0.0
    assert by_label["B"]["rate"] == round(
        by_label["B"]["counts"]["read"] / by_label["B"]["counts"]["delivered"], 4
    )
    assert report["runs"][0]["ab"]["winner"] == "B"


def test_variants_are_checked_before_anything_is_saved(client, auth, session):
    segment_id, _ = audience(session, 1)
    a = template(session, "a", "Plain offer")
    cases = [
        ({"variants": [{"template_id": a, "percent": 100}]}, "variants"),
        ({"variants": [{"template_id": a, "percent": 60}, {"body": "x", "percent": 30}]}, "variants"),
        (
            {"variants": [{"template_id": a, "body": "x", "percent": 50}, {"body": "y", "percent": 50}]},
            "variants[0].body",
        ),
        (
            {"variants": [{"template_id": 999, "percent": 50}, {"body": "y", "percent": 50}]},
            "variants[0].template_id",
        ),
        (
            {"template_id": a, "ab_test": {"test_percent": 20, "judge_by": "read", "after_hours": 4}},
            "ab_test",
        ),
        (
            {
                "variants": [{"template_id": a, "percent": 50}, {"body": "y", "percent": 50}],
                "ab_test": {"test_percent": 20, "judge_by": "opens", "after_hours": 4},
            },
            "ab_test.judge_by",
        ),
    ]
    for extra, field in cases:
        answer = client.post(
            "/api/v1/campaigns", json={"name": "x", "include_segments": [segment_id], **extra}, headers=auth
        )
        assert answer.status_code == 422 and field in answer.get_json()["errors"], (extra, answer.get_json())
    assert client.get("/api/v1/campaigns", headers=auth).get_json()["items"] == []


def test_a_split_without_a_test_gives_each_contact_its_share():
    steps = [CampaignStep(id=1, percent=70, label="A"), CampaignStep(id=2, percent=30, label="B")]
    picks = Counter(variants.assign(7, contact, steps).id for contact in range(1, 10_001))
    assert 6700 < picks[1] < 7300
    assert all(variants.assign(7, c, steps).id == variants.assign(7, c, steps).id for c in range(1, 100))
