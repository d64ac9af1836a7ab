"""Without WEBHOOK_ALLOW_PRIVATE, a webhook never goes to a loopback, private, link-local or
other non-public address: refused when the endpoint is saved, and again when the request
would leave (a saved endpoint's DNS can change)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from chatman.errors import Invalid
from chatman.outgoing.addresses import check_target, refusal
from tests.outgoing.conftest import T0, delivery

PRIVATE = [
    ("http://127.0.0.1:8080/hook", "loopback"),
    ("http://localhost/hook", "loopback"),
    ("http://2130706433/hook", "loopback"),  # 127.0.0.1 written as a number
    ("http://10.1.2.3/hook", "private"),
    ("https://192.168.0.10/hook", "private"),
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://[::1]:9000/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://100.64.0.1/", "non-public"),
]


@pytest.mark.parametrize(("url", "kind"), PRIVATE)
def test_an_endpoint_on_a_private_address_is_refused_at_create_with_a_422(client, auth, url, kind):
    response = client.post("/api/v1/webhook-endpoints", json={"name": "CRM", "url": url}, headers=auth)
    assert response.status_code == 422, response.json
    (reason,) = response.json["errors"]["url"]
    assert f"a {kind} address" in reason or f"an {kind} address" in reason
    assert "WEBHOOK_ALLOW_PRIVATE" in reason


def test_the_same_addresses_pass_when_private_ones_are_allowed(client, auth, allow_private):
    for url, _ in PRIVATE:
        response = client.post("/api/v1/webhook-endpoints", json={"name": "CRM", "url": url}, headers=auth)
        assert response.status_code == 201, (url, response.json)


def test_a_public_address_passes():
    check_target("https://crm.example.com/hooks", False, resolver=lambda host, port: ["93.184.215.14"])
    with pytest.raises(Invalid, match="private"):  # one private answer among public ones is enough
        check_target("https://crm.example.com/", False, resolver=lambda h, p: ["93.184.215.14", "10.0.0.7"])
    assert refusal("2606:4700:4700::1111") is None


@pytest.mark.parametrize(
    "url", ["ftp://crm.example.com/", "crm.example.com/hook", "http:///nohost", "https://a b.com/", ""]
)
def test_only_http_and_https_urls_with_a_host_are_accepted(url):
    with pytest.raises(Invalid) as error:
        check_target(url, True)
    assert "url" in error.value.errors


def test_a_saved_endpoint_on_a_private_address_is_refused_when_sending(
    session, crm, in_process_jobs, endpoint_for, queue, first_attempt, drive
):
    in_process_jobs(WEBHOOK_ALLOW_PRIVATE="false")
    # Saved while private addresses were allowed (or its DNS has changed since).
    targets = {
        "loopback": endpoint_for(),  # the CRM stub itself: it must never see a request
        "private": endpoint_for("http://10.1.2.3/hook"),
        "link-local": endpoint_for("http://169.254.169.254/latest/meta-data"),
    }
    ids = {kind: queue(endpoint) for kind, endpoint in targets.items()}

    first_attempt(list(ids.values()), T0)

    assert crm.received == []
    for kind, delivery_id in ids.items():
        refused = delivery(session, delivery_id)
        assert refused.status == "failed", (kind, refused.reason)
        assert f"a {kind} address: refused" in refused.reason
        (attempt,) = refused.attempts
        assert attempt.status_code is None and attempt.duration_ms < 1000  # never connected
    assert drive(T0 + timedelta(days=1)) == 0


def test_a_public_host_is_reached_at_the_address_that_was_checked(crm, monkeypatch):
    """The socket goes to the address the check looked at, never to a second lookup's answer
    (which DNS rebinding could change): here the host resolves for the check only."""
    from chatman.outgoing import transport

    checked = []

    def resolve(host: str, port: int) -> list[str]:
        checked.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(transport, "resolve", resolve)
    monkeypatch.setattr(transport, "refusal", lambda address: None)  # take loopback for public
    port = crm.url.split(":")[2].split("/")[0]
    with transport.Sender(2, allow_private=False) as sender:
        (answer,) = sender.send([transport.Request(f"http://crm.example.invalid:{port}/hook", {}, b"{}")])
    assert (answer.outcome, answer.status_code) == (transport.ANSWERED, 200)
    assert checked == ["crm.example.invalid"]
    assert crm.received[0].host == f"crm.example.invalid:{port}"
