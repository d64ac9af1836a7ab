"""External events start triggered campaigns for one contact, once per event id."""

from __future__ import annotations

from sqlalchemy import func, select

from chatman.contacts.models import Contact
from chatman.ledger import counters
from chatman.ledger.models import Message
from chatman.messaging.simulator import sent_to
from tests.factories import make_contact


def triggered_campaign(client, auth, event="order_created"):
    template = client.post(
        "/api/v1/templates",
        headers=auth,
        json={
            "name": "order_update",
            "language": "en",
            "category": "utility",
            "status": "approved",
            "body": "Hi {{name}}, order {{order}} is confirmed: {{total}}",
            "variables": {
                "name": {"field": "name"},
                "order": {"event": "order_id"},
                "total": {"event": "total"},
            },
        },
    ).json
    campaign = client.post(
        "/api/v1/campaigns",
        headers=auth,
        json={
            "name": "Order confirmations",
            "kind": "triggered",
            "trigger_event": event,
            "template_id": template["id"],
        },
    )
    assert campaign.status_code == 201, campaign.json
    launched = client.post(f"/api/v1/campaigns/{campaign.json['id']}/launch", headers=auth)
    assert launched.status_code == 202 and launched.json["status"] == "running"
    return campaign.json["id"]


def test_an_event_sends_its_campaign_once_with_the_event_properties(
    app, client, auth, session, redis, run_worker
):
    campaign_id = triggered_campaign(client, auth)
    asha = make_contact(session, name="Asha")
    event = {
        "event": "order_created",
        "contact": {"phone": asha.phone},
        "event_id": "ord-1001",
        "properties": {"order_id": "1001", "total": "₹499"},
    }
    first = client.post("/api/v1/events", headers=auth, json=event)
    again = client.post("/api/v1/events", headers=auth, json=event)
    assert (first.status_code, first.json["campaigns"], first.json["duplicate"]) == (
        202,
        [campaign_id],
        False,
    )
    assert (again.status_code, again.json["campaigns"], again.json["duplicate"]) == (202, [], True)
    other = client.post(
        "/api/v1/events",
        headers=auth,
        json=event | {"event_id": "ord-1002", "properties": {"order_id": "1002", "total": "₹99"}},
    )
    assert other.json["campaigns"] == [campaign_id]
    run_worker()
    assert [m["body"] for m in sent_to(redis, asha.phone)] == [
        "Hi Asha, order 1001 is confirmed: ₹499",
        "Hi Asha, order 1002 is confirmed: ₹99",
    ]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Message).where(Message.status == "submitted")) == 2
    assert counters.differences(session, campaign_id) == []
    campaign = client.get(f"/api/v1/campaigns/{campaign_id}", headers=auth).json
    assert campaign["status"] == "running" and campaign["counters"]["submitted"] == 2  # stays on


def test_an_unknown_phone_becomes_a_contact_and_a_missing_property_skips_with_its_reason(
    app, client, auth, session, redis, run_worker
):
    triggered_campaign(client, auth)
    answer = client.post(
        "/api/v1/events",
        headers=auth,
        json={
            "event": "order_created",
            "contact": {"phone": "+919811100000"},
            "properties": {"order_id": "7"},
        },
    )
    assert answer.status_code == 202
    run_worker()
    session.expire_all()
    assert session.scalar(select(Contact.phone)) == "+919811100000"
    assert session.scalar(select(Message.skip_reason)) == "missing_variable"  # no "total" in the event


def test_events_refuse_bad_input_and_need_a_token(client, auth):
    assert (
        client.post("/api/v1/events", json={"event": "x", "contact": {"phone": "+919811100000"}}).status_code
        == 401
    )
    no_contact = client.post("/api/v1/events", headers=auth, json={"event": "order_created", "contact": {}})
    assert no_contact.status_code == 422 and "contact" in no_contact.json["errors"]
    bad_phone = client.post("/api/v1/events", headers=auth, json={"event": "x", "contact": {"phone": "12"}})
    assert bad_phone.status_code == 422 and "contact.phone" in bad_phone.json["errors"]
    bad_name = client.post("/api/v1/events", headers=auth, json={"event": "no spaces!", "contact": {"id": 1}})
    assert bad_name.status_code == 422 and "event" in bad_name.json["errors"]
    unknown = client.post("/api/v1/events", headers=auth, json={"event": "x", "contact": {"id": 999}})
    assert unknown.status_code == 422 and "contact.id" in unknown.json["errors"]
