"""Every request here once answered 500. Each must now get a 4xx that names the field at fault,
and leave every table as it was, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from chatman.db import Base
from tests.factories import inbound_form, signed_post

BIG = 2**63  # one more than a 64-bit id column holds
PHONE = "+919820012345"


@pytest.fixture
def world(client, auth):
    """One record of each kind, and a second of each whose name a PATCH may try to take."""

    def post(path, body):
        answer = client.post(f"/api/v1/{path}", headers=auth, json=body)
        assert answer.status_code == 201, answer.json
        return answer.json["id"]

    ids = {"contact": post("contacts", {"phone": PHONE, "attributes": {"city": "Pune"}})}
    for n in ("", "2"):
        ids[f"segment{n}"] = post("segments", {"name": f"vip{n}"})
        ids[f"template{n}"] = post(
            "templates", {"name": f"hello{n}", "language": "en", "category": "utility", "body": "Hi"}
        )
        ids[f"flow{n}"] = post(
            "flows", {"name": f"survey{n}", "steps": [{"id": "a", "type": "message", "text": "Hi"}]}
        )
        ids[f"trigger{n}"] = post(
            "triggers",
            {
                "name": f"hours{n}",
                "match_type": "keyword",
                "patterns": [f"hours{n}"],
                "action": "reply",
                "reply_body": "9 to 5",
            },
        )
    ids["campaign"] = post("campaigns", {"name": "sale", "body": "Hi", "include_segments": [ids["segment"]]})
    return ids


def snapshot(app) -> dict[str, list]:
    """Every row of every table (API tokens aside: each request stamps its token's last use)."""
    db = app.extensions["chatman.db"]
    with db.engine.connect() as conn:
        return {
            table.name: sorted(map(repr, conn.execute(table.select()).all()))
            for table in Base.metadata.sorted_tables
            if table.name != "api_tokens"
        }


def nested_rules(depth: int) -> str:
    return (
        '{"rules": '
        + '{"all": [' * depth
        + '{"field": "dnd", "op": "eq", "value": true}'
        + "]}" * depth
        + "}"
    )


# (method, path, body: a JSON value, or raw text sent as JSON), expected status, the field named
CASES = {
    "id too big in the path": ("get", "contacts/9223372036854775808", None, 404, "contact_id"),
    "id too big in a PATCH path": ("patch", "segments/9223372036854775808", {"name": "x"}, 404, "segment_id"),
    "id too big in a query": ("get", "contacts?after=9223372036854775808", None, 422, "after"),
    "segment id too big": (
        "post",
        "campaigns",
        {"name": "c", "body": "Hi", "include_segments": [BIG]},
        422,
        "include_segments[0]",
    ),
    "contact id too big": ("post", "events", {"event": "paid", "contact": {"id": BIG}}, 422, "contact.id"),
    "flow id too big": (
        "post",
        "triggers",
        {"name": "f", "patterns": ["x"], "action": "flow", "flow_id": BIG},
        422,
        "flow_id",
    ),
    "rule on id too big": (
        "post",
        "segments/preview",
        {"rules": {"all": [{"field": "id", "op": "gt", "value": BIG}]}},
        422,
        "rules.all[0].value",
    ),
    "PATCH a segment to a taken name": ("patch", "segments/{segment}", {"name": "vip2"}, 409, "name"),
    "PATCH a trigger to a taken name": ("patch", "triggers/{trigger}", {"name": "hours2"}, 409, "name"),
    "PATCH a flow to a taken name": ("patch", "flows/{flow}", {"name": "survey2"}, 409, "name"),
    "PATCH a template to a taken name": ("patch", "templates/{template}", {"name": "hello2"}, 409, "name"),
    "DELETE a segment a campaign sends to": ("delete", "segments/{segment}", None, 409, "segment_id"),
    "PATCH a trigger to name a missing flow": (
        "patch",
        "triggers/{trigger}",
        {"action": "flow", "flow_id": 999999, "reply_template_id": 999999},
        422,
        "flow_id",
    ),
    "unknown template on POST": (
        "post",
        "campaigns",
        {"name": "c", "template_id": 999999, "include_segments": ["{segment}"]},
        422,
        "template_id",
    ),
    "unknown template on PATCH": (
        "patch",
        "campaigns/{campaign}",
        {"template_id": 999999, "body": None},
        422,
        "template_id",
    ),
    "time past year 9999 in UTC": (
        "patch",
        "contacts/{contact}",
        {"opted_in_at": "9999-12-31T23:59:59-14:00"},
        422,
        "opted_in_at",
    ),
    "time before year 1 in UTC": (
        "patch",
        "contacts/{contact}",
        {"opted_in_at": "0001-01-01T00:00:00+14:00"},
        422,
        "opted_in_at",
    ),
    "schedule past year 9999 in UTC": (
        "post",
        "campaigns/{campaign}/schedule",
        {"send_at": "9999-12-31T23:59:59", "timezone": "Pacific/Honolulu"},
        422,
        "send_at",
    ),
    "a billion days": (
        "post",
        "segments/preview",
        {"rules": {"all": [{"field": "created_at", "op": "within_last_days", "value": 1000000000}]}},
        422,
        "rules.all[0].value",
    ),
    "rule time before year 1": (
        "post",
        "segments/preview",
        {"rules": {"all": [{"field": "created_at", "op": "after", "value": "0001-01-01T00:00:00+14:00"}]}},
        422,
        "rules.all[0].value",
    ),
    "lone surrogate": ("post", "contacts", '{"phone": "+919820099999", "name": "x\\ud800y"}', 422, "name"),
    "5,000-digit integer": (
        "post",
        "contacts",
        '{"phone": "+919820099999", "attributes": {"n": ' + "9" * 5000 + "}}",
        400,
        "body",
    ),
    "JSON nested 900 deep": ("post", "segments/preview", nested_rules(900), 400, "body"),
    "NUL in a name": ("post", "contacts", {"phone": "+919820099999", "name": "a\x00b"}, 422, "name"),
    "NUL in an attribute": (
        "patch",
        "contacts/{contact}",
        {"attributes": {"city": "Pu\x00ne"}},
        422,
        "attributes.city",
    ),
    "NUL in a segment name": ("post", "segments", {"name": "v\x00ip"}, 422, "name"),
    "NUL in an event name": (
        "post",
        "events",
        {"event": "pa\x00id", "contact": {"phone": PHONE}},
        422,
        "event",
    ),
    "wa_id of 100 characters": (
        "post",
        "contacts",
        {"phone": "+919820099999", "wa_id": "1" * 100},
        422,
        "wa_id",
    ),
    "name of 300 characters": (
        "post",
        "contacts",
        {"phone": "+919820099999", "name": "n" * 300},
        422,
        "name",
    ),
    "attribute name of 100 characters": (
        "post",
        "contacts",
        {"phone": "+919820099999", "attributes": {"a" * 100: 1}},
        422,
        "attributes",
    ),
    "save_to that is no name": (
        "post",
        "flows",
        {"name": "f", "steps": [{"id": "q", "type": "ask", "text": "?", "save_to": 5}]},
        422,
        "steps[0].save_to",
    ),
    "attribute name ending in a newline": (
        "post",
        "attributes",
        {"name": "city\n", "type": "string"},
        422,
        "name",
    ),
    "step id past 64 characters by a newline": (
        "post",
        "flows",
        {"name": "f", "steps": [{"id": "a" * 64 + "\n", "type": "message", "text": "?"}]},
        422,
        "steps[0].id",
    ),
    "a string where a number goes": (
        "post",
        "triggers",
        {
            "name": "f",
            "match_type": "fuzzy",
            "patterns": ["x"],
            "action": "reply",
            "reply_body": "y",
            "threshold": "50",
        },
        422,
        "threshold",
    ),
    "a number where a boolean goes": ("patch", "contacts/{contact}", {"dnd": 1}, 422, "dnd"),
    "in list of 70,000 values": (
        "post",
        "segments/preview",
        {
            "rules": {
                "all": [{"field": "attributes.city", "op": "in", "value": [f"c{i}" for i in range(70000)]}]
            }
        },
        422,
        "rules.all[0].value",
    ),
    "a body of 3 MB": (
        "post",
        "segments/preview",
        {"rules": {"all": []}, "pad": "x" * 3_000_000},
        413,
        "body",
    ),
    "contains of 1 MB": (
        "post",
        "segments/preview",
        {"rules": {"all": [{"field": "name", "op": "contains", "value": "x" * 1_000_000}]}},
        422,
        "rules.all[0].value",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gets_a_4xx_naming_the_field_and_writes_nothing(app, client, auth, world, case):
    method, path, body, status, field = CASES[case]
    path = "/api/v1/" + path.format(**world)
    if isinstance(body, dict):
        body = json.loads(json.dumps(body).replace('"{segment}"', str(world["segment"])))
    before = snapshot(app)
    if isinstance(body, str):
        answer = getattr(client, method)(
            path, headers={**auth, "Content-Type": "application/json"}, data=body
        )
    else:
        answer = getattr(client, method)(path, headers=auth, json=body)
    assert answer.status_code == status, answer.get_data(as_text=True)[:500]
    error = answer.json
    assert set(error) == {"code", "message", "errors"} and error["code"] == status
    # A query field is named with its location ("query.after"); a key by its path.
    assert any(
        field in (name, name.removeprefix("query.")) or name.startswith(f"{field}.")
        for name in error["errors"]
    ), error
    assert snapshot(app) == before


def test_an_inbound_message_with_a_media_count_that_is_no_number_is_refused(app, client, world):
    before = snapshot(app)
    answer = signed_post(client, app, "/webhooks/twilio/inbound", inbound_form(PHONE, "hi", NumMedia="abc"))
    assert answer.status_code == 400 and "NumMedia" in answer.get_data(as_text=True)
    assert snapshot(app) == before


@pytest.mark.parametrize(
    "field, value",
    [
        ("MessageSid", "SM" + "a" * 70),
        ("MessageSid", "SM" + "a" * 62 + "\n"),
        ("WaId", "9" * 40),
        ("From", "whatsapp:+91" + "9" * 80),
        ("Body", "a\x00b"),
        ("NumMedia", "\u00b2"),  # a digit to str.isdigit(), not to int()
    ],
)
def test_an_inbound_message_with_an_impossible_field_is_refused(app, client, world, field, value):
    before = snapshot(app)
    answer = signed_post(client, app, "/webhooks/twilio/inbound", inbound_form(PHONE, "hi", **{field: value}))
    assert answer.status_code == 400 and field in answer.get_data(as_text=True)
    assert snapshot(app) == before


def test_an_over_long_profile_name_is_cut_to_its_column_and_the_message_kept(app, client, session):
    answer = signed_post(
        client, app, "/webhooks/twilio/inbound", inbound_form("+919820055555", "hi", ProfileName="P" * 300)
    )
    assert answer.status_code == 200
    stored = session.execute(text("SELECT name FROM contacts WHERE phone = '+919820055555'")).scalar_one()
    assert stored == "P" * 200
    assert session.execute(text("SELECT count(*) FROM inbound_messages")).scalar_one() == 1


@pytest.mark.postgresql
def test_a_patch_racing_a_delete_of_the_same_record_gets_404(app, client, auth, world):
    """The PATCH reads the segment, then its UPDATE waits on the row lock of a DELETE that
    commits: the UPDATE then finds no row, which is a 404, not a 500."""
    import threading

    engine = app.extensions["chatman.db"].engine
    segment = world["segment2"]
    answers = []
    with engine.connect() as deleting:
        deleting.execute(text("DELETE FROM segments WHERE id = :id"), {"id": segment})
        patch = threading.Thread(
            target=lambda: answers.append(
                client.patch(f"/api/v1/segments/{segment}", headers=auth, json={"description": "late"})
            )
        )
        patch.start()
        with engine.connect() as watch:
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            for _ in range(200):
                if watch.execute(text(waiting)).scalar_one():
                    break
                watch.commit()
                patch.join(0.05)
            else:
                pytest.fail("the PATCH never waited on the DELETE's row lock")
        deleting.commit()
        patch.join(30)
    answer = answers[0]
    assert answer.status_code == 404, answer.json
    assert answer.json["errors"] == {"segment_id": ["was deleted meanwhile"]}
    assert client.get(f"/api/v1/segments/{segment}", headers=auth).status_code == 404


def test_a_status_callback_naming_a_row_in_other_digits_is_refused(app, client, redis):
    from chatman import inbox
    from tests.webhooks.test_twilio_status import params

    path = "/webhooks/twilio/status?m=%C2%B2"  # "²"
    answer = signed_post(client, app, path, params("SM" + "1" * 32, "delivered"))
    assert answer.status_code == 400 and inbox.backlog(redis, inbox.STATUS) == 0


def test_an_install_holds_a_bounded_number_of_attributes(app, client, auth, world):
    from dataclasses import replace

    original = app.extensions["chatman.settings"]
    app.extensions["chatman.settings"] = replace(original, max_attributes=3)
    try:
        before = snapshot(app)
        answer = client.post(
            "/api/v1/contacts",
            headers=auth,
            json={"phone": "+919820099999", "attributes": {"a": 1, "b": 2, "c": 3}},
        )
        assert answer.status_code == 422 and "MAX_ATTRIBUTES" in answer.json["message"], answer.json
        assert snapshot(app) == before
    finally:
        app.extensions["chatman.settings"] = original
