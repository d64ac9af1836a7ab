from __future__ import annotations

from rq import Queue


def setup(client, auth, status="approved"):
    segment = client.post(
        "/api/v1/segments",
        headers=auth,
        json={
            "name": "all",
            "kind": "dynamic",
            "rules": {"all": [{"field": "dnd", "op": "eq", "value": False}]},
        },
    ).json
    template = client.post(
        "/api/v1/templates",
        headers=auth,
        json={
            "name": "welcome",
            "language": "en",
            "category": "marketing",
            "status": status,
            "body": "Hello {{who}}",
            "variables": {"who": {"field": "name"}},
        },
    )
    assert template.status_code == 201, template.json
    return segment["id"], template.json["id"]


def test_campaign_lifecycle_through_the_api(client, auth, redis):
    segment_id, template_id = setup(client, auth)
    created = client.post(
        "/api/v1/campaigns",
        headers=auth,
        json={
            "name": "Welcome",
            "template_id": template_id,
            "include_segments": [segment_id],
            "utm_campaign": "w1",
        },
    )
    assert created.status_code == 201, created.json
    campaign = created.json
    assert (campaign["status"], campaign["template_id"], campaign["include_segments"]) == (
        "draft",
        template_id,
        [segment_id],
    )
    url = f"/api/v1/campaigns/{campaign['id']}"
    assert client.patch(url, headers=auth, json={"name": "Welcome!"}).json["name"] == "Welcome!"
    launched = client.post(f"{url}/launch", headers=auth)
    assert launched.status_code == 202 and launched.json["status"] == "running"
    assert Queue("system", connection=redis).count == 1  # the dispatch job
    assert client.patch(url, headers=auth, json={"name": "late"}).status_code == 409
    assert client.post(f"{url}/launch", headers=auth).status_code == 409
    assert client.post(f"{url}/pause", headers=auth).json["status"] == "paused"
    assert client.post(f"{url}/pause", headers=auth).status_code == 409
    assert client.post(f"{url}/resume", headers=auth).json["status"] == "running"
    client.post(f"{url}/pause", headers=auth)
    bad = client.post(f"{url}/resume", headers=auth, json={"catch_up": "maybe"})
    assert bad.status_code == 422 and "catch_up" in bad.json["errors"], bad.json
    assert client.get(url, headers=auth).json["status"] == "paused"  # a refused resume changes nothing
    resumed = client.post(f"{url}/resume", headers=auth, json={"catch_up": True})
    assert resumed.status_code == 200 and resumed.json["status"] == "running"
    assert client.post(f"{url}/cancel", headers=auth).json["status"] == "cancelled"
    assert client.get(url, headers=auth).json["status"] == "cancelled"


def test_campaign_input_is_refused_with_clear_4xx(client, auth):
    segment_id, template_id = setup(client, auth, status="pending")
    unknown = client.post(
        "/api/v1/campaigns", headers=auth, json={"name": "x", "body": "hi", "include_segments": [999]}
    )
    assert unknown.status_code == 422 and "include_segments[0]" in unknown.json["errors"]
    neither = client.post(
        "/api/v1/campaigns", headers=auth, json={"name": "x", "include_segments": [segment_id]}
    )
    assert neither.status_code == 422 and "template_id" in neither.json["errors"]
    campaign = client.post(
        "/api/v1/campaigns",
        headers=auth,
        json={"name": "x", "template_id": template_id, "include_segments": [segment_id]},
    ).json
    url = f"/api/v1/campaigns/{campaign['id']}"
    unapproved = client.post(f"{url}/launch", headers=auth)
    assert unapproved.status_code == 422 and "not approved" in unapproved.json["message"]
    past = client.post(
        f"{url}/schedule", headers=auth, json={"send_at": "2020-01-01T09:00:00", "timezone": "Asia/Kolkata"}
    )
    assert past.status_code == 422 and "past" in past.json["message"]
    badzone = client.post(
        f"{url}/schedule", headers=auth, json={"send_at": "2099-01-01T09:00:00", "timezone": "Moon/Base"}
    )
    assert badzone.status_code == 422 and "timezone" in badzone.json["errors"]
    scheduled = client.post(
        f"{url}/schedule", headers=auth, json={"send_at": "2099-01-01T09:00:00", "timezone": "Asia/Kolkata"}
    )
    assert scheduled.status_code == 200
    assert scheduled.json["send_at"] == "2099-01-01T03:30:00+00:00"
    assert client.get(url, headers=auth).json["status"] == "scheduled"
    assert client.get("/api/v1/campaigns/999", headers=auth).status_code == 404


def test_template_placeholders_must_have_sources(client, auth):
    response = client.post(
        "/api/v1/templates",
        headers=auth,
        json={
            "name": "t",
            "language": "en",
            "category": "utility",
            "body": "Order {{order}} for {{who}}",
            "variables": {"who": {"field": "shoe_size"}},
        },
    )
    assert response.status_code == 422
    assert set(response.json["errors"]) == {"variables.order", "variables.who"}


def test_owner_must_be_a_user_and_campaigns_list_by_status(app, client, auth):
    from chatman.auth.accounts import create_user

    with app.extensions["chatman.db"].session() as session:
        create_user(session, "maya@shop.example", "correct horse battery")
    segment_id, template_id = setup(client, auth)
    body = {"name": "Owned", "template_id": template_id, "include_segments": [segment_id]}
    stranger = client.post("/api/v1/campaigns", headers=auth, json=body | {"owner": "nobody@shop.example"})
    assert stranger.status_code == 422 and "owner" in stranger.json["errors"]
    assert client.get("/api/v1/campaigns", headers=auth).json["items"] == []  # nothing half-written
    owned = client.post("/api/v1/campaigns", headers=auth, json=body | {"owner": "Maya@Shop.example"})
    assert owned.status_code == 201 and owned.json["owner"] == "maya@shop.example"
    other = client.post("/api/v1/campaigns", headers=auth, json=body | {"name": "Other"}).json
    client.post(f"/api/v1/campaigns/{other['id']}/cancel", headers=auth)
    drafts = client.get("/api/v1/campaigns?status=draft", headers=auth).json["items"]
    assert [c["name"] for c in drafts] == ["Owned"]
    page = client.get("/api/v1/campaigns?limit=1", headers=auth).json
    assert len(page["items"]) == 1 and page["next_after"] == page["items"][0]["id"]
    assert client.get("/api/v1/campaigns?status=lost", headers=auth).status_code == 422
