"""The Twilio adapter against Twilio's HTTP API, faked with `responses`."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
import requests
import responses
from sqlalchemy import select

from chatman.messaging.providers import OutboundMessage
from chatman.messaging.twilio import TwilioProvider

SID = "AC" + "1" * 32
URL = f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json"


def created(sid="SM" + "a" * 32):
    return {
        "sid": sid,
        "status": "queued",
        "account_sid": SID,
        "to": "whatsapp:+919820012345",
        "from": "whatsapp:+14155238886",
        "direction": "outbound-api",
    }


def error(status, code, message="error"):
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@pytest.fixture
def twilio():
    return TwilioProvider(SID, "token", from_="+14155238886", backoff_s=0, timeout=2)


def form(call) -> dict:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


@responses.activate
def test_template_send_uses_content_sid_and_variables(twilio):
    responses.post(URL, json=created(), status=201)
    result = twilio.send(
        OutboundMessage(
            to="+919820012345",
            content_sid="HX" + "b" * 32,
            content_variables={"1": "Asha"},
            status_callback="https://chat.example/webhooks/twilio/status",
        )
    )
    assert result.ok and result.sid == "SM" + "a" * 32
    sent = form(responses.calls[0])
    assert sent["To"] == "whatsapp:+919820012345" and sent["From"] == "whatsapp:+14155238886"
    assert sent["ContentSid"] == "HX" + "b" * 32 and json.loads(sent["ContentVariables"]) == {"1": "Asha"}
    assert sent["StatusCallback"] == "https://chat.example/webhooks/twilio/status"
    assert "Body" not in sent
    assert responses.calls[0].request.headers["Authorization"].startswith("Basic ")


@responses.activate
def test_free_text_send_uses_body_and_a_messaging_service():
    provider = TwilioProvider(SID, "token", messaging_service_sid="MG" + "c" * 32, backoff_s=0)
    responses.post(URL, json=created(), status=201)
    assert provider.send(OutboundMessage(to="+919820012345", body="Thanks!")).ok
    sent = form(responses.calls[0])
    assert sent["Body"] == "Thanks!" and sent["MessagingServiceSid"] == "MG" + "c" * 32 and "From" not in sent


@responses.activate
def test_429_then_success_is_retried(twilio):
    responses.post(URL, json=error(429, 20429, "Too Many Requests"), status=429)
    responses.post(URL, json=created(), status=201)
    result = twilio.send(OutboundMessage(to="+919820012345", body="hi"))
    assert result.ok and len(responses.calls) == 2


@responses.activate
def test_500_three_times_is_a_retryable_failure_after_bounded_tries(twilio):
    for _ in range(3):
        responses.post(URL, json=error(500, 20500, "Internal Server Error"), status=500)
    result = twilio.send(OutboundMessage(to="+919820012345", body="hi"))
    assert not result.ok and result.retryable and result.error_code == "20500"
    assert len(responses.calls) == 3


@responses.activate
def test_permanent_error_is_not_retried(twilio):
    responses.post(URL, json=error(400, 63024, "Invalid message recipient"), status=400)
    result = twilio.send(OutboundMessage(to="+919820012345", body="hi"))
    assert (result.ok, result.retryable, result.error_code) == (False, False, "63024")
    assert len(responses.calls) == 1


@responses.activate
def test_connect_timeouts_are_retried_then_reported(twilio):
    """No connection was made, so nothing reached Twilio: trying again cannot send twice."""
    responses.post(URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    responses.post(URL, json=created(), status=201)
    assert twilio.send(OutboundMessage(to="+919820012345", body="hi")).ok
    responses.reset()
    for _ in range(3):
        responses.post(URL, body=requests.exceptions.ConnectTimeout("connect timed out"))
    result = twilio.send(OutboundMessage(to="+919820012345", body="hi"))
    assert (result.ok, result.retryable, result.error_code) == (False, True, "timeout")
    assert len(responses.calls) == 3


@responses.activate
def test_read_timeout_is_not_resent_but_left_to_a_lookup(twilio):
    """The request went out and no answer came: Twilio may have the message, and it has no
    idempotency key, so a blind retry could send twice."""
    responses.post(URL, body=requests.exceptions.ReadTimeout("read timed out"))
    responses.post(URL, json=created(), status=201)
    result = twilio.send(OutboundMessage(to="+919820012345", body="hi"))
    assert (result.ok, result.ambiguous, result.error_code) == (False, True, "timeout")
    assert len(responses.calls) == 1


@responses.activate
def test_lookup_finds_our_recent_message_to_that_number(twilio):
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    old = now - timedelta(hours=1)
    fmt = "%a, %d %b %Y %H:%M:%S +0000"
    page = {
        "messages": [
            created("SM" + "1" * 32) | {"date_created": now.strftime(fmt), "body": "Hi Asha"},
            created("SM" + "2" * 32) | {"date_created": old.strftime(fmt)},
            created("SM" + "3" * 32) | {"date_created": now.strftime(fmt), "direction": "inbound"},
        ],
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "uri": f"/2010-04-01/Accounts/{SID}/Messages.json",
    }
    responses.get(URL, json=page, status=200)
    (found,) = twilio.lookup("+919820012345", now - timedelta(seconds=30))
    assert (found.sid, found.body) == ("SM" + "1" * 32, "Hi Asha")  # what recovery matches on
    assert abs(found.created_at - now) < timedelta(seconds=1)
    assert parse_qs(responses.calls[0].request.url.split("?", 1)[1])["To"] == ["whatsapp:+919820012345"]


@responses.activate
def test_opt_out_code_fails_the_row_and_makes_the_contact_dnd(app, session, twilio):
    from chatman.campaigns import lifecycle
    from chatman.campaigns.audience import freeze_page
    from chatman.campaigns.dispatch import pending_batches, send_batch
    from chatman.contacts import segments
    from chatman.contacts.models import Contact
    from chatman.ledger import counters
    from chatman.ledger.models import Message
    from chatman.timeutils import utcnow
    from tests.factories import make_contact

    person = make_contact(session, name="Asha")
    seg = segments.create_segment(session, {"name": "s", "kind": "static"})
    segments.add_members(session, seg.id, [person.id])
    person.last_inbound_at = utcnow()
    campaign = lifecycle.create_campaign(session, {"name": "c", "body": "hi", "include_segments": [seg.id]})
    run = lifecycle.launch(session, campaign.id)
    freeze_page(session, run, lifecycle.campaign_step(session, campaign.id))
    session.commit()
    responses.post(URL, json=error(400, 21610, "Attempt to send to unsubscribed recipient"), status=400)
    (ids,) = list(pending_batches(session, run.id))
    result = send_batch(session, ids, twilio)
    assert result.failed == 1
    session.expire_all()
    message = session.scalar(select(Message))
    assert (message.status, message.error_code) == ("failed", "21610")
    contact = session.get(Contact, person.id)
    assert (contact.dnd, contact.dnd_reason) == (True, "opt_out")
    assert counters.differences(session, campaign.id) == []


def test_connections_kept_between_sends_are_probed_while_idle(twilio_stub):
    """Over a real socket (the local stub): the connection the next send will reuse has TCP
    keepalive on, so a NAT that forgets an idle connection cannot make a send hang."""
    import socket

    from tests.conftest import TWILIO_ACCOUNT

    provider = TwilioProvider(
        TWILIO_ACCOUNT, "stub-auth-token", from_="+14155238886", base_url=twilio_stub.base_url
    )
    assert provider.send(OutboundMessage(to="+919820012345", body="Hello")).sid
    adapter = provider.client.http_client.session.get_adapter(twilio_stub.base_url)
    # urllib3's pool container refuses plain iteration: keys() it is.
    pools = [adapter.poolmanager.pools[key] for key in adapter.poolmanager.pools.keys()]  # noqa: SIM118
    idle = [conn.sock for pool in pools for conn in list(pool.pool.queue) if conn and conn.sock]
    assert len(idle) == 1  # kept for the next send
    assert idle[0].getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert idle[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
    assert len(twilio_stub.messages()["by_to"]) == 1
