"""Nobody can speak for the provider: no public signing key, no host games, no huge bodies,
and a malformed callback is refused before it is queued."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from chatman import inbox
from chatman.contacts.models import Contact
from chatman.messaging.models import InboundMessage
from tests.factories import inbound_form, signed_post
from tests.webhooks.test_twilio_status import params

STATUS = "/webhooks/twilio/status"
INBOUND = "/webhooks/twilio/inbound"


def test_a_stop_signed_with_the_old_public_default_key_is_refused(app, client, session, redis):
    form = inbound_form("+919820012345", "STOP")
    url = app.extensions["chatman.settings"].public_base_url + INBOUND
    forged = RequestValidator("dev-insecure-change-me").compute_signature(url, form)
    assert signed_post(client, app, INBOUND, form, signature=forged).status_code == 403
    assert session.scalar(select(func.count()).select_from(Contact)) == 0
    assert session.scalar(select(func.count()).select_from(InboundMessage)) == 0
    assert signed_post(client, app, INBOUND, form).status_code == 200  # our own key does work
    assert session.scalar(select(Contact.dnd).where(Contact.phone == "+919820012345")) is True


@pytest.mark.parametrize("path", [STATUS, INBOUND])
def test_a_signature_made_for_another_host_is_refused_whatever_the_host_header(app, client, redis, path):
    key = app.extensions["chatman.settings"].webhook_auth_token
    form = params("SM" + "1" * 32, "read") if path == STATUS else inbound_form("+919820012345", "STOP")
    for host in ("attacker.example", "attacker.example:8080"):
        signature = RequestValidator(key).compute_signature(f"http://{host}{path}", form)
        answer = client.post(path, data=form, headers={"X-Twilio-Signature": signature, "Host": host})
        assert answer.status_code == 403, host
    assert inbox.backlog(redis, inbox.STATUS) == 0


def test_a_huge_body_is_refused_before_it_is_read(app, client, redis):
    junk = {"MessageSid": "SM1", "MessageStatus": "sent", "Pad": "x" * 1_000_000}
    # A signature of the right shape, so only the size can refuse it before any HMAC.
    answer = client.post(STATUS, data=junk, headers={"X-Twilio-Signature": "A" * 27 + "="})
    assert answer.status_code == 413
    fits = signed_post(client, app, STATUS, params("SM" + "2" * 32, "sent") | {"Pad": "x" * 60_000})
    assert fits.status_code == 204  # a large but plausible body still passes
    assert inbox.backlog(redis, inbox.STATUS) == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"ErrorCode": "6" * 17}, "ErrorCode"),
        ({"MessageStatus": "d" * 25}, "MessageStatus"),
        ({"MessageSid": "SM" + "1" * 63}, "MessageSid"),
        ({"ErrorMessage": "bad\x00byte"}, "ErrorMessage"),
        ({"MessageStatus": ""}, "MessageStatus"),
    ],
)
def test_a_malformed_signed_callback_gets_400_and_is_not_queued(app, client, redis, change, field):
    answer = signed_post(client, app, STATUS, params("SM" + "3" * 32, "undelivered") | change)
    assert answer.status_code == 400
    assert field in answer.get_data(as_text=True)
    assert inbox.backlog(redis, inbox.STATUS) == 0


def test_a_callback_naming_a_row_that_is_no_number_is_refused(app, client, redis):
    answer = signed_post(client, app, f"{STATUS}?m=12x", params("SM" + "4" * 32, "sent"))
    assert answer.status_code == 400
    assert signed_post(client, app, f"{STATUS}?m=12", params("SM" + "4" * 32, "sent")).status_code == 204
    assert inbox.backlog(redis, inbox.STATUS) == 1


def test_an_inbound_message_holding_a_nul_is_refused(app, client, session, redis):
    answer = signed_post(client, app, INBOUND, inbound_form("+919820012345", "hi\x00there"))
    assert answer.status_code == 400
    assert session.scalar(select(func.count()).select_from(InboundMessage)) == 0
