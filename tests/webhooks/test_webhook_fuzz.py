"""Whatever a signed request to a webhook holds (fields missing, of the wrong kind, too long,
with NUL or bytes that are not UTF-8, sent with another content type, sent twice), the
answer is 2xx or 4xx, never 5xx, and only well-formed messages are kept, each once."""

from __future__ import annotations

import json
import re
import uuid
from urllib.parse import urlencode

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from chatman import inbox
from chatman.contacts.models import Contact
from chatman.messaging.models import InboundMessage
from chatman.messaging.twilio_events import parse_status
from tests.factories import inbound_form
from tests.webhooks.test_twilio_status import params

INBOUND = "/webhooks/twilio/inbound"
STATUS = "/webhooks/twilio/status"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")

# What a field may be given: text of any kind (NUL and control characters included), a very
# long value, a number, or nothing at all.
junk = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=8).map(lambda s: s * 60),
    st.integers().map(str),
    st.sampled_from(
        [
            "",
            "\x00",
            "abc",
            "-1",
            "99",
            "1e309",
            "nan",
            "\u00b2",
            "\u0661\u0662",
            "7\n",
            "whatsapp:",
            "whatsapp:+",
            "+0000",
        ]
    ),
)
FIELDS = [
    "MessageSid",
    "From",
    "To",
    "Body",
    "WaId",
    "ProfileName",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "ButtonText",
    "ButtonPayload",
    "MessageType",
    "Latitude",
    "Longitude",
    "OriginalRepliedMessageSid",
    "MessageStatus",
    "ErrorCode",
    "ErrorMessage",
]
changes = st.dictionaries(st.sampled_from(FIELDS), st.one_of(st.none(), junk), max_size=4)
invalid_utf8 = st.sampled_from(["%FF", "%C3%28", "%ED%A0%80", "%80abc", "%F0%28%8C%BC"])
encodings = st.sampled_from(["form", "form", "form", "raw-bytes", "json", "text", "multipart"])


def signed_request(app, path: str, form: dict[str, str], encoding: str, bad_bytes: str):
    """The body and headers Twilio would send for `form`, signed over what the server will
    read from that body (a JSON or text body gives it no form fields at all)."""
    settings_ = app.extensions["chatman.settings"]
    validator = RequestValidator(settings_.webhook_auth_token)
    url = settings_.public_base_url + path
    if encoding == "form":
        body, content_type, seen = urlencode(form), "application/x-www-form-urlencoded", form
    elif encoding == "raw-bytes":
        body = urlencode({k: v for k, v in form.items() if k != "Body"}) + f"&Body=hi{bad_bytes}there"
        content_type = "application/x-www-form-urlencoded"
        seen = _as_the_server_reads(body)
    elif encoding == "json":
        body, content_type, seen = json.dumps(form), "application/json", {}
    elif encoding == "text":
        body, content_type, seen = urlencode(form), "text/plain", {}
    else:
        return {"data": form, "content_type": "multipart/form-data"}, validator.compute_signature(url, form)
    return {"data": body, "content_type": content_type}, validator.compute_signature(url, seen)


def _as_the_server_reads(body: str) -> dict[str, str]:
    """The form werkzeug reads from a urlencoded body (bytes that are not UTF-8 included)."""
    environ = EnvironBuilder(
        method="POST", data=body.encode(), content_type="application/x-www-form-urlencoded"
    ).get_environ()
    return Request(environ).form.to_dict()


def post(client, app, path, form, encoding="form", bad_bytes="%FF"):
    request, signature = signed_request(app, path, form, encoding, bad_bytes)
    return client.post(path, headers={"X-Twilio-Signature": signature}, **request)


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(change=changes, encoding=encodings, bad_bytes=invalid_utf8, replay=st.booleans())
def test_inbound_fuzz_never_5xx_and_keeps_only_well_formed_messages_once(
    app, client, session, redis, change, encoding, bad_bytes, replay
):
    sid = "SM" + uuid.uuid4().hex
    form = inbound_form("+919820012345", "hello", sid=sid)
    for field, value in change.items():
        if value is None:
            form.pop(field, None)
        else:
            form[field] = value
    before = session.scalar(select(func.coalesce(func.max(InboundMessage.id), 0)))
    answers = [post(client, app, INBOUND, form, encoding, bad_bytes) for _ in range(2 if replay else 1)]
    assert all(a.status_code < 500 for a in answers), [a.get_data(as_text=True)[:300] for a in answers]
    assert answers[0].status_code != 403  # signed as Twilio signs: it is the content that is judged
    event(f"answered {answers[0].status_code}")
    assert len({a.status_code for a in answers}) == 1  # a replay gets the first answer again
    session.expire_all()
    added = session.scalar(select(func.count()).where(InboundMessage.id > before))
    if answers[0].status_code != 200:
        assert 400 <= answers[0].status_code < 500 and added == 0
        return
    # Kept once, however often it came (an earlier example may have sent this sid already).
    (message,) = session.scalars(
        select(InboundMessage).where(InboundMessage.provider_sid == form["MessageSid"])
    )
    assert added == (1 if message.id > before else 0)
    assert len(message.provider_sid) <= 64
    contact = session.get(Contact, message.contact_id)
    assert E164.match(contact.phone) and (contact.wa_id is None or len(contact.wa_id) <= 32)
    assert contact.name is None or len(contact.name) <= 200
    texts = [message.body, message.button_text, message.button_payload, message.media_type]
    assert not any("\x00" in t for t in texts if t)


@FUZZ
@given(
    change=changes,
    encoding=encodings,
    bad_bytes=invalid_utf8,
    replay=st.booleans(),
    row=st.one_of(st.none(), st.integers(1, 10**20).map(str), junk),
)
def test_status_fuzz_never_5xx_and_queues_only_callbacks_that_parse(
    app, client, redis, change, encoding, bad_bytes, replay, row
):
    redis.delete(inbox.STATUS)
    form = params("SM" + uuid.uuid4().hex, "delivered")
    for field, value in change.items():
        if value is None:
            form.pop(field, None)
        else:
            form[field] = value
    path = STATUS if row is None else f"{STATUS}?{urlencode({'m': row})}"  # the row our URL named
    answers = [post(client, app, path, form, encoding, bad_bytes) for _ in range(2 if replay else 1)]
    assert all(a.status_code < 500 for a in answers), [a.get_data(as_text=True)[:300] for a in answers]
    assert answers[0].status_code != 403  # signed as Twilio signs: it is the content that is judged
    event(f"answered {answers[0].status_code}")
    queued = [(json.loads(f[b"data"]), f.get(b"m", b"").decode()) for _, f in redis.xrange(inbox.STATUS)]
    assert len(queued) == sum(a.status_code == 204 for a in answers)
    for data, message_id in queued:
        parse_status(data, message_id)  # everything queued is a callback the drain can apply
