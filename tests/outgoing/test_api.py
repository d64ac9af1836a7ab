"""The API of outgoing webhooks: endpoints (their secret shown once), deliveries and attempts."""

from __future__ import annotations

import base64

import pytest

from chatman.outgoing.models import WebhookEndpoint
from tests.outgoing.conftest import T0

API = "/api/v1"


@pytest.fixture
def created(client, auth, crm, allow_private) -> dict:
    response = client.post(f"{API}/webhook-endpoints", json={"name": "CRM", "url": crm.url}, headers=auth)
    assert response.status_code == 201, response.json
    crm.secret = response.json["secret"]
    return response.json


def test_create_shows_the_secret_once_and_never_again(client, auth, session, created):
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) >= 24
    assert created["enabled"] is True and created["disabled_reason"] is None

    shown = client.get(f"{API}/webhook-endpoints/{created['id']}", headers=auth)
    assert shown.status_code == 200 and "secret" not in shown.json
    assert shown.json["url"] == created["url"]
    listed = client.get(f"{API}/webhook-endpoints", headers=auth).json
    assert [e["id"] for e in listed] == [created["id"]] and all("secret" not in e for e in listed)
    changed = client.patch(
        f"{API}/webhook-endpoints/{created['id']}", json={"name": "Sales CRM"}, headers=auth
    )
    assert changed.status_code == 200 and "secret" not in changed.json
    # Kept, since every request is signed with it.
    assert session.get(WebhookEndpoint, created["id"]).secret == secret

    rotated = client.post(f"{API}/webhook-endpoints/{created['id']}/rotate-secret", headers=auth)
    assert rotated.status_code == 200 and rotated.json["secret"].startswith("whsec_")
    assert rotated.json["secret"] != secret


def test_deliveries_are_listed_by_page_and_shown_with_their_attempts(
    client, auth, session, crm, created, senders, queue, first_attempt
):
    endpoint = session.get(WebhookEndpoint, created["id"])
    ids = [queue(endpoint) for _ in range(3)]
    crm.answer(500, 200, 200)
    first_attempt(ids, T0)

    url = f"{API}/webhook-endpoints/{created['id']}/deliveries"
    page = client.get(f"{url}?limit=2", headers=auth).json
    assert [d["id"] for d in page] == ids[:2]
    rest = client.get(f"{url}?after={page[-1]['id']}", headers=auth).json
    assert [d["id"] for d in rest] == ids[2:]
    # Sent side by side: whichever the CRM answered first got the 500.
    (failed,) = [d["id"] for d in client.get(f"{url}?status=pending", headers=auth).json]
    delivered = [i for i in ids if i != failed]
    first = next(d for d in page + rest if d["id"] == failed)
    assert first["webhook_id"].startswith("msg_") and first["event_type"] == "rule.fired"
    assert first["status"] == "pending" and first["attempt_count"] == 1 and first["next_attempt_at"]
    assert "HTTP 500" in first["reason"]

    detail = client.get(f"{API}/webhook-deliveries/{delivered[0]}", headers=auth)
    assert detail.status_code == 200
    assert detail.json["status"] == "delivered" and detail.json["delivered_at"]
    (attempt,) = detail.json["attempts"]
    assert attempt["attempt"] == 1 and attempt["status_code"] == 200
    assert isinstance(attempt["duration_ms"], int) and attempt["error"] is None
    failed_once = client.get(f"{API}/webhook-deliveries/{failed}", headers=auth).json["attempts"]
    assert [(a["status_code"], a["error"][:8]) for a in failed_once] == [(500, "HTTP 500")]


def test_reenabling_an_endpoint_a_410_disabled_revives_it_and_turning_it_off_fails_its_pending(
    client, auth, session, crm, created, senders, queue, first_attempt
):
    endpoint = session.get(WebhookEndpoint, created["id"])
    crm.answer(410)
    first_attempt([queue(endpoint)], T0)
    url = f"{API}/webhook-endpoints/{created['id']}"
    off = client.get(url, headers=auth).json
    assert off["enabled"] is False and "410" in off["disabled_reason"] and off["disabled_at"]

    on = client.patch(url, json={"enabled": True}, headers=auth)
    assert on.status_code == 200 and on.json["enabled"] is True and on.json["disabled_reason"] is None
    session.expire_all()
    waiting = queue(endpoint)
    assert client.patch(url, json={"enabled": False}, headers=auth).json["enabled"] is False
    detail = client.get(f"{API}/webhook-deliveries/{waiting}", headers=auth).json
    assert detail["status"] == "failed" and "turned off" in detail["reason"]


def test_deleting_an_endpoint_deletes_its_deliveries(client, auth, session, created, queue):
    delivery_id = queue(session.get(WebhookEndpoint, created["id"]))
    assert client.delete(f"{API}/webhook-endpoints/{created['id']}", headers=auth).status_code == 204
    assert client.get(f"{API}/webhook-endpoints/{created['id']}", headers=auth).status_code == 404
    assert client.get(f"{API}/webhook-deliveries/{delivery_id}", headers=auth).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "https://crm.example.com/"}, "name"),
        ({"name": "CRM"}, "url"),
        ({"name": "", "url": "https://crm.example.com/"}, "name"),
        ({"name": "x" * 201, "url": "https://crm.example.com/"}, "name"),
        ({"name": "CRM", "url": "ftp://crm.example.com/"}, "url"),
        ({"name": "CRM", "url": "not a url"}, "url"),
        ({"name": "CRM", "url": "https://" + "a" * 2000 + ".com/"}, "url"),
        ({"name": "CRM", "url": "https://crm.example.com/", "enabled": "yes"}, "enabled"),
        ({"name": "CRM", "url": "https://crm.example.com/", "secret": "whsec_mine"}, "secret"),
    ],
)
def test_bad_endpoints_are_refused_with_a_422_naming_the_field(client, auth, allow_private, body, field):
    response = client.post(f"{API}/webhook-endpoints", json=body, headers=auth)
    assert response.status_code == 422, response.json
    assert field in response.json["errors"], response.json


def test_bad_changes_and_queries_are_refused_with_a_422_naming_the_field(client, auth, created):
    url = f"{API}/webhook-endpoints/{created['id']}"
    response = client.patch(url, json={"url": "gopher://x/"}, headers=auth)
    assert response.status_code == 422 and "url" in response.json["errors"]
    response = client.patch(url, json={"enabled": None}, headers=auth)
    assert response.status_code == 422 and "enabled" in response.json["errors"]
    for query, field in (("limit=0", "limit"), ("after=-1", "after"), ("status=lost", "status")):
        response = client.get(f"{url}/deliveries?{query}", headers=auth)
        assert response.status_code == 422, response.json
        assert any(name.endswith(field) for name in response.json["errors"]), response.json


def test_unknown_endpoints_and_deliveries_are_404(client, auth):
    for method, path in (
        ("get", "/webhook-endpoints/999"),
        ("patch", "/webhook-endpoints/999"),
        ("delete", "/webhook-endpoints/999"),
        ("post", "/webhook-endpoints/999/rotate-secret"),
        ("get", "/webhook-endpoints/999/deliveries"),
        ("get", "/webhook-deliveries/999"),
    ):
        kwargs = {"json": {"name": "x"}} if method == "patch" else {}
        assert getattr(client, method)(API + path, headers=auth, **kwargs).status_code == 404, path


def test_every_route_needs_the_api_token(client, created):
    endpoint = created["id"]
    for method, path in (
        ("get", "/webhook-endpoints"),
        ("post", "/webhook-endpoints"),
        ("get", f"/webhook-endpoints/{endpoint}"),
        ("patch", f"/webhook-endpoints/{endpoint}"),
        ("delete", f"/webhook-endpoints/{endpoint}"),
        ("post", f"/webhook-endpoints/{endpoint}/rotate-secret"),
        ("get", f"/webhook-endpoints/{endpoint}/deliveries"),
        ("get", "/webhook-deliveries/1"),
    ):
        for headers in ({}, {"Authorization": "Bearer not-a-token"}):
            response = getattr(client, method)(API + path, json={"name": "x"}, headers=headers)
            assert response.status_code == 401, (method, path)
            assert "secret" not in response.get_data(as_text=True)


def test_the_openapi_document_describes_the_webhook_routes(client):
    paths = client.get(f"{API}/openapi.json").json["paths"]
    assert {
        f"{API}/webhook-endpoints",
        f"{API}/webhook-endpoints/{{endpoint_id}}",
        f"{API}/webhook-endpoints/{{endpoint_id}}/deliveries",
        f"{API}/webhook-deliveries/{{delivery_id}}",
    } <= set(paths)
