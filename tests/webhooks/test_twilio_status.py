"""POST /webhooks/twilio/status: signed by Twilio's algorithm, stored once, forward only."""

from __future__ import annotations

import random
from collections import Counter

from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from chatman import inbox
from chatman.ledger import counters
from chatman.ledger.models import Message, MessageEvent
from tests.factories import make_submitted_run

URL = "/webhooks/twilio/status"
PATHS = [
    ("sent", "delivered"),
    ("delivered", "read"),
    ("sent", "read"),
    ("sent", "undelivered"),
    ("failed", "delivered"),
]
FINAL = {
    ("sent", "delivered"): "delivered",
    ("delivered", "read"): "read",
    ("sent", "read"): "read",
    ("sent", "undelivered"): "failed",
    ("failed", "delivered"): "delivered",
}


def post(client, app, params: dict, signature: str | None = "sign", url: str = URL):
    settings = app.extensions["chatman.settings"]
    headers = {}
    if signature == "sign":
        full = settings.public_base_url + url
        headers["X-Twilio-Signature"] = RequestValidator(settings.webhook_auth_token).compute_signature(
            full, params
        )
    elif signature is not None:
        headers["X-Twilio-Signature"] = signature
    return client.post(url, data=params, headers=headers)


def params(sid: str, status: str) -> dict:
    form = {
        "MessageSid": sid,
        "SmsSid": sid,
        "MessageStatus": status,
        "SmsStatus": status,
        "AccountSid": "AC" + "0" * 32,
        "From": "whatsapp:+14155238886",
        "ChannelPrefix": "whatsapp",
        "ApiVersion": "2010-04-01",
    }
    if status in ("failed", "undelivered"):
        form |= {"ErrorCode": "63024", "ErrorMessage": "Invalid message recipient"}
    return form


def test_ten_thousand_shuffled_duplicated_callbacks(app, client, session, redis, run_worker):
    campaign, run, step, messages = make_submitted_run(session, 2500)
    rng = random.Random(42)
    plan = {m.provider_sid: rng.choice(PATHS) for m in messages}
    callbacks = [(sid, status) for sid, path in plan.items() for status in path] * 2
    rng.shuffle(callbacks)
    assert len(callbacks) == 10_000
    codes = Counter(post(client, app, params(sid, status)).status_code for sid, status in callbacks)
    assert codes == {204: 10_000}
    assert inbox.backlog(redis, inbox.STATUS) == 10_000  # accepted at once, applied by a worker
    run_worker()
    assert inbox.backlog(redis, inbox.STATUS) == 0

    session.expire_all()
    finals = dict(session.execute(select(Message.provider_sid, Message.status)).all())
    assert finals == {sid: FINAL[path] for sid, path in plan.items()}
    assert session.scalar(select(func.count()).select_from(MessageEvent)) == 5000  # each (sid, status) once
    assert counters.differences(session, campaign.id) == []
    failed = session.scalar(select(func.count()).select_from(Message).where(Message.error_code == "63024"))
    assert failed == sum(FINAL[p] == "failed" for p in plan.values())


def test_unsigned_or_wrongly_signed_callbacks_get_403_and_change_nothing(
    app, client, session, redis, run_worker
):
    campaign, run, step, (message,) = make_submitted_run(session, 1)
    form = params(message.provider_sid, "read")
    assert post(client, app, form, signature=None).status_code == 403
    assert post(client, app, form, signature="bm90IGEgc2lnbmF0dXJl").status_code == 403
    assert inbox.backlog(redis, inbox.STATUS) == 0
    tampered = dict(form)
    signed = post(client, app, form, signature="sign")  # a real signature, used on other content below
    assert signed.status_code == 204
    run_worker()
    session.expire_all()
    before = session.scalar(select(func.count()).select_from(MessageEvent))
    tampered["MessageStatus"] = "failed"
    settings = app.extensions["chatman.settings"]
    good_sig = RequestValidator(settings.webhook_auth_token).compute_signature(
        settings.public_base_url + URL, form
    )
    assert post(client, app, tampered, signature=good_sig).status_code == 403
    other_key = RequestValidator("not-our-token").compute_signature(settings.public_base_url + URL, form)
    assert post(client, app, form | {"MessageStatus": "delivered"}, signature=other_key).status_code == 403
    assert inbox.backlog(redis, inbox.STATUS) == 0
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(MessageEvent)) == before
    assert session.get(Message, message.id).status == "read"


def test_callback_without_sid_is_a_400_after_the_signature_check(app, client, redis):
    assert post(client, app, {"MessageStatus": "sent"}).status_code == 400
    assert inbox.backlog(redis, inbox.STATUS) == 0


def test_behind_a_proxy_the_forwarded_url_is_checked_only_when_trusted(app, session, redis):
    from dataclasses import replace

    from chatman import create_app

    _, _, _, (message,) = make_submitted_run(session, 1)
    form = params(message.provider_sid, "delivered")
    public = "https://chat.example.com"
    signature = RequestValidator(app.extensions["chatman.settings"].webhook_auth_token).compute_signature(
        public + URL, form
    )
    headers = {
        "X-Twilio-Signature": signature,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "chat.example.com",
    }
    settings = replace(app.extensions["chatman.settings"], public_base_url="http://unset.invalid")
    untrusting = create_app(settings).test_client()
    assert untrusting.post(URL, data=form, headers=headers).status_code == 403
    assert inbox.backlog(redis, inbox.STATUS) == 0
    trusting = create_app(replace(settings, trust_proxy_headers=True)).test_client()
    assert trusting.post(URL, data=form, headers=headers).status_code == 204
    assert inbox.backlog(redis, inbox.STATUS) == 1
