"""The Twilio stub, driven by the real twilio-python client over loopback (no database)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
import requests
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.rest.api.v2010.account.message import MessageInstance

from tests.twilio_stub import StubProcess, start_stub

SID = "AC" + "1" * 32
TOKEN = "stub-token"
SENDER = "whatsapp:+14155238886"
ASHA = "whatsapp:+919820012345"
RAVI = "whatsapp:+919820054321"
SERVICE = "MG" + "a" * 32
TEMPLATE = "HX" + "b" * 32


@pytest.fixture(scope="module")
def stub() -> Iterator[StubProcess]:
    with start_stub(auth_token=TOKEN) as stub:
        yield stub


@pytest.fixture(autouse=True)
def _fresh_stub(stub: StubProcess) -> None:
    stub.reset()


def make_client(stub: StubProcess, timeout: float = 5, username: str = SID, password: str = TOKEN) -> Client:
    client = Client(username, password, account_sid=SID, http_client=TwilioHttpClient(timeout=timeout))
    client.api.base_url = stub.base_url
    return client


@pytest.fixture
def twilio(stub: StubProcess) -> Client:
    return make_client(stub)


def send(client: Client, to: str = ASHA, **params: object) -> MessageInstance:
    return client.messages.create(to=to, **({"from_": SENDER, "body": "Hello"} | params))


def wait_for(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_send_is_recorded_with_its_fields_and_gets_a_unique_sid(stub, twilio):
    plain = send(twilio, body="Namaste")
    template = twilio.messages.create(
        to=ASHA,
        messaging_service_sid=SERVICE,
        content_sid=TEMPLATE,
        content_variables=json.dumps({"1": "Asha"}),
        status_callback="https://chat.example/webhooks/twilio/status",
    )

    assert re.fullmatch(r"SM[0-9a-f]{32}", plain.sid) and re.fullmatch(r"SM[0-9a-f]{32}", template.sid)
    assert plain.sid != template.sid
    assert (plain.status, plain.direction, plain.to, plain.from_) == ("queued", "outbound-api", ASHA, SENDER)
    assert template.status == "accepted" and template.messaging_service_sid == SERVICE
    assert plain.date_created.tzinfo is not None and plain.date_sent is None

    seen = stub.messages(full=True)
    assert seen["count"] == 2 and seen["by_to"] == {"+919820012345": 2} and seen["held"] == 0
    first, second = seen["messages"]
    assert first["sid"] == plain.sid and first["body"] == "Namaste" and first["from"] == SENDER
    assert second == second | {
        "sid": template.sid,
        "to": ASHA,
        "from": None,
        "messaging_service_sid": SERVICE,
        "body": None,
        "content_sid": TEMPLATE,
        "content_variables": {"1": "Asha"},
        "status_callback": "https://chat.example/webhooks/twilio/status",
    }
    assert datetime.fromisoformat(second["date_created"]).tzinfo is not None


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"to": ""}, 21604),
        ({"to": "whatsapp:+91 98200"}, 21211),
        ({"from_": None}, 21603),
        ({"body": None}, 21602),
        ({"body": None, "content_sid": TEMPLATE, "content_variables": "not json"}, 21656),
        ({"body": None, "content_sid": TEMPLATE, "content_variables": '["Asha"]'}, 21656),
    ],
)
def test_invalid_send_raises_twilio_rest_exception_with_twilio_code(stub, twilio, params, code):
    with pytest.raises(TwilioRestException) as raised:
        send(twilio, **params)

    assert (raised.value.status, raised.value.code) == (400, code)
    assert stub.messages()["count"] == 0


def test_queued_errors_answer_in_order_then_service_resumes(stub, twilio):
    stub.config(
        errors=[
            {"status": 429, "code": 20429},
            {"status": 500, "code": 20500},
            {"status": 400, "code": 21610, "message": "Attempt to send to unsubscribed recipient"},
        ]
    )

    answers = []
    for _ in range(3):
        with pytest.raises(TwilioRestException) as raised:
            send(twilio)
        answers.append((raised.value.status, raised.value.code))
    delivered = send(twilio)

    assert answers == [(429, 20429), (500, 20500), (400, 21610)]
    assert "unsubscribed recipient" in raised.value.msg
    assert [record["sid"] for record in stub.messages(full=True)["messages"]] == [delivered.sid]


def test_random_errors_follow_the_seed(stub, twilio):
    def outcomes() -> list[bool]:
        stub.config(error_rate=0.5, error={"status": 503, "code": 20503}, seed=7)
        results = []
        for _ in range(12):
            try:
                send(twilio)
                results.append(True)
            except TwilioRestException as exc:
                assert (exc.status, exc.code) == (503, 20503)
                results.append(False)
        return results

    first = outcomes()
    assert outcomes() == first
    assert set(first) == {True, False}, "at a 50 % error rate some sends pass and some fail"
    assert stub.messages()["count"] == 2 * first.count(True)


def test_list_finds_messages_to_a_number_sent_after_a_time(stub, twilio):
    earlier = [send(twilio).sid, send(twilio).sid, send(twilio, to=RAVI).sid]
    # The API compares at whole seconds: start the "after" group in a fresh second.
    time.sleep(1 - time.time() % 1 + 0.01)
    cutoff = datetime.now(UTC).replace(microsecond=0)
    later = [send(twilio).sid, send(twilio).sid]
    send(twilio, to=RAVI)

    found = twilio.messages.list(to=ASHA, date_sent_after=cutoff, limit=20)
    assert [m.sid for m in found] == later[::-1]  # newest first

    day = found[0].date_created.date().isoformat()
    everything_that_day = twilio.messages.list(to=ASHA, date_sent=day)
    assert {m.sid for m in everything_that_day} == {*earlier[:2], *later}
    # Pages of one, followed through next_page_uri, still give every message once.
    assert [m.sid for m in twilio.messages.list(to=ASHA, page_size=1)] == [*later[::-1], *earlier[1::-1]]


def test_hold_after_records_the_send_but_withholds_the_answer_until_release(stub, twilio):
    stub.config(hold_after=1)
    send(twilio)  # the first is answered

    outcome: dict[str, object] = {}

    def send_in_thread(timeout: float, key: str) -> threading.Thread:
        def run() -> None:
            try:
                outcome[key] = send(make_client(stub, timeout=timeout)).sid
            except requests.Timeout as exc:
                outcome[key] = exc

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    # A client that gives up: the provider has the message, the client only saw a timeout.
    impatient = send_in_thread(0.8, "impatient")
    wait_for(lambda: stub.messages()["held"] == 1)
    assert stub.messages()["count"] == 2
    impatient.join(5)
    assert isinstance(outcome["impatient"], requests.Timeout)
    wait_for(lambda: stub.messages()["held"] == 0)  # its disconnect freed the hold

    patient = send_in_thread(5, "patient")
    wait_for(lambda: stub.messages()["held"] == 1)
    assert stub.release() == 1
    patient.join(5)
    records = stub.messages(full=True)["messages"]
    assert outcome["patient"] == records[-1]["sid"] and len(records) == 3

    started = time.monotonic()
    send(twilio)  # release also cleared hold_after
    assert time.monotonic() - started < 0.5


def test_latency_delays_every_answer(stub, twilio):
    stub.config(latency_ms=300)
    started = time.monotonic()
    send(twilio)
    assert time.monotonic() - started >= 0.3


def test_basic_auth_must_name_the_path_account_and_match_the_token(stub):
    other_account = make_client(stub, username="AC" + "2" * 32)
    wrong_token = make_client(stub, password="not-the-token")

    for client in (other_account, wrong_token):
        with pytest.raises(TwilioRestException) as raised:
            send(client)
        assert (raised.value.status, raised.value.code) == (401, 20003)
    assert stub.messages()["count"] == 0


def test_stub_without_token_accepts_any_password_and_exits_cleanly_on_sigterm():
    with start_stub() as stub:
        send(make_client(stub, password="anything"))
        assert stub.messages()["count"] == 1
        assert stub.stop() == 0


def test_a_misspelt_setting_is_refused_rather_than_ignored(stub):
    with pytest.raises(ValueError, match="unknown settings"):
        stub.config(latency=100)
    assert stub.config()["latency_ms"] == 0


def test_a_mangled_answer_is_recorded_but_unreadable_and_lookups_can_be_refused(stub, twilio):
    stub.config(mangle=1)
    with pytest.raises(ValueError):  # what twilio-python makes of a body cut off mid-way
        send(twilio)
    assert send(twilio).sid.startswith("SM")  # the next answer is whole again
    assert stub.messages()["count"] == 2  # both were accepted
    assert len(twilio.messages.list(to=ASHA)) == 2
    stub.config(list_error={"status": 500, "code": 20500})
    with pytest.raises(TwilioException, match="Unable to fetch page"):
        twilio.messages.list(to=ASHA)
    assert send(twilio).sid.startswith("SM")  # sending still works
