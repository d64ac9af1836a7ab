"""Example phrases on triggers through the API: triggers described by them, /triggers/match
telling which phrase won, opt-outs said in other words, and /triggers/unmatched with
/triggers/<id>/examples to teach a trigger what customers really wrote."""

from __future__ import annotations

from sqlalchemy import select

from chatman.messaging.models import InboundMessage
from chatman.triggers.intents import DEFAULT_EXAMPLE_THRESHOLD, OPT_OUT_SURE
from tests.factories import inbound_form, signed_post

INBOUND = "/webhooks/twilio/inbound"
WHERE_ORDER = {
    "name": "where_order",
    "examples": ["where is my order", "order kab aayega", "track my parcel"],
    "action": "reply",
    "reply_body": "Your order is on its way.",
}
CANCEL = {
    "name": "cancel_order",
    "examples": ["cancel my order", "order cancel karna hai"],
    "action": "reply",
    "reply_body": "Cancelled.",
}
FALLBACK = {"name": "anything", "is_fallback": True, "action": "reply", "reply_body": "A person will answer."}


def post(client, auth, path, body):
    return client.post(f"/api/v1/{path}", headers=auth, json=body)


def made(client, auth, body) -> dict:
    answer = post(client, auth, "triggers", body)
    assert answer.status_code == 201, answer.json
    return answer.json


def match(client, auth, text: str) -> dict:
    answer = post(client, auth, "triggers/match", {"text": text})
    assert answer.status_code == 200, answer.json
    return answer.json


def test_a_trigger_given_only_examples_is_of_match_type_examples(client, auth):
    trigger = made(client, auth, WHERE_ORDER | {"example_threshold": 60})
    assert trigger["match_type"] == "examples" and trigger["patterns"] == []
    assert trigger["examples"] == WHERE_ORDER["examples"] and trigger["example_threshold"] == 60
    again = client.get(f"/api/v1/triggers/{trigger['id']}", headers=auth).json
    assert (again["match_type"], again["examples"]) == ("examples", WHERE_ORDER["examples"])
    # Any other trigger may have examples too; a PATCH of other fields keeps them.
    keyword = made(client, auth, CANCEL | {"match_type": "keyword", "patterns": ["cancel"]})
    assert (keyword["match_type"], keyword["examples"]) == ("keyword", CANCEL["examples"])
    patched = client.patch(f"/api/v1/triggers/{keyword['id']}", headers=auth, json={"priority": 3}).json
    assert (patched["priority"], patched["examples"]) == (3, CANCEL["examples"])
    replaced = client.patch(
        f"/api/v1/triggers/{keyword['id']}", headers=auth, json={"examples": ["stop my order"]}
    ).json
    assert replaced["examples"] == ["stop my order"]


def test_bad_examples_are_refused_with_the_field_named(client, auth):
    cases = [
        ({"examples": ["where is my order", "🙂🙂"]}, "examples[1]", "needs words"),
        ({"examples": [""]}, "examples.0", "Length"),
        ({"examples": ["x" * 501]}, "examples.0", "Length"),
        ({"examples": "where is my order"}, "examples", "Not a valid list"),
        ({"examples": [f"order {i}" for i in range(51)]}, "examples", "at most 50"),
        ({"examples": []}, "match_type", "one of"),  # neither patterns nor examples: say which kind
        ({"example_threshold": 0}, "example_threshold", "out of range"),
        ({"example_threshold": 101}, "example_threshold", "out of range"),
        ({"example_threshold": "60"}, "example_threshold", "Not a valid number"),
        ({"match_type": "examples", "patterns": ["order"]}, "patterns", "not patterns"),
        ({"match_type": "examples", "examples": []}, "examples", "at least one example"),
    ]
    for change, field, says in cases:
        answer = post(client, auth, "triggers", WHERE_ORDER | change)
        assert answer.status_code == 422, (change, answer.json)
        reasons = answer.json["errors"].get(field, [])
        assert any(says.lower() in r.lower() for r in reasons), (change, answer.json)
    fallback = post(client, auth, "triggers", FALLBACK | {"examples": ["hello"]})
    assert fallback.status_code == 422 and "fallback" in fallback.json["errors"]["examples"][0]
    assert client.get("/api/v1/triggers", headers=auth).json == []


def test_match_says_which_example_phrase_won_and_with_what_score(client, auth):
    order = made(client, auth, WHERE_ORDER)
    cancel = made(client, auth, CANCEL | {"match_type": "keyword", "patterns": ["cancel"]})
    made(client, auth, FALLBACK)
    found = match(client, auth, "mera order kab aayega")
    assert found["trigger_id"] == order["id"] and found["fallback"] is False
    assert (found["stage"], found["phrase"]) == ("examples", "order kab aayega")
    assert DEFAULT_EXAMPLE_THRESHOLD <= found["score"] <= 100 and found["clause"]
    assert found["opt"]["kind"] is None
    top = found["candidates"][0]
    assert top == {
        "trigger_id": order["id"],
        "score": found["score"],
        "stage": "examples",
        "phrase": "order kab aayega",
        "clause": found["clause"],
    }
    # A keyword trigger that has example phrases too is found by them first: the stage says so.
    cancelled = match(client, auth, "mujhe order cancel karna hai")
    assert (cancelled["trigger_id"], cancelled["stage"]) == (cancel["id"], "examples")
    assert cancelled["phrase"] == "order cancel karna hai"
    assert cancelled["candidates"][0]["stage"] == "examples"
    # A trigger found by its pattern is reported with its match type, and no phrase.
    made(
        client,
        auth,
        {
            "name": "hours",
            "match_type": "exact",
            "patterns": ["hours"],
            "action": "reply",
            "reply_body": "10-8",
        },
    )
    hours = match(client, auth, "Hours?")
    assert (hours["stage"], hours["phrase"], hours["score"]) == ("exact", None, 100.0)
    # What nothing matches goes to the fallback: no winning candidate to describe.
    other = match(client, auth, "qwzx vbnm")
    assert other["fallback"] is True and other["stage"] is None and other["score"] is None


def test_an_opt_out_in_other_words_is_judged_before_any_trigger(client, auth):
    made(client, auth, WHERE_ORDER)
    made(
        client,
        auth,
        {
            "name": "messages",
            "match_type": "keyword",
            "patterns": ["messages"],
            "action": "reply",
            "reply_body": "?",
        },
    )
    made(client, auth, FALLBACK)
    found = match(client, auth, "please stop sending me these messages")
    assert (
        found["opt"]["kind"] == "opt_out" and found["opt"]["score"] >= OPT_OUT_SURE and found["opt"]["phrase"]
    )
    assert found["trigger_id"] is None and found["fallback"] is False and found["candidates"] == []
    assert found["stage"] is None
    word = match(client, auth, "STOP")
    assert (
        word["opt"] == {"kind": "opt_out", "score": 100.0, "phrase": "STOP", "by_word": True}
        and word["trigger_id"] is None
    )
    assert match(client, auth, "where is my order")["opt"]["kind"] is None


def test_an_unmatched_message_is_listed_and_taught_to_its_nearest_trigger(app, client, auth, redis):
    # A threshold of its own, so that the test does not hang on the default's tuning.
    order = made(client, auth, WHERE_ORDER | {"example_threshold": 60})
    made(client, auth, CANCEL)
    made(client, auth, FALLBACK)
    said = "parcel abhi tak nahi aaya"
    assert match(client, auth, said)["fallback"] is True  # nothing but the fallback answers it yet
    assert signed_post(client, app, INBOUND, inbound_form("+919820012345", said)).status_code == 200
    answered = signed_post(client, app, INBOUND, inbound_form("+919820012345", "mera order kab aayega"))
    assert answered.status_code == 200  # answered by where_order: not listed

    listed = client.get("/api/v1/triggers/unmatched", headers=auth)
    assert listed.status_code == 200, listed.json
    (unmatched,) = listed.json
    assert (unmatched["body"], unmatched["handled_by"]) == (said, "fallback")
    assert unmatched["received_at"] and unmatched["inbound_id"] >= 1
    nearest = unmatched["nearest"][0]
    assert (nearest["trigger_id"], nearest["name"], nearest["phrase"]) == (
        order["id"],
        "where_order",
        "track my parcel",
    )
    assert 0 < nearest["score"] < 60 and nearest["score"] == round(nearest["score"], 1)

    taught = post(client, auth, f"triggers/{order['id']}/examples", {"inbound_id": unmatched["inbound_id"]})
    assert taught.status_code == 200, taught.json
    assert taught.json["examples"] == [*WHERE_ORDER["examples"], said]
    found = match(client, auth, said)
    assert (found["trigger_id"], found["stage"], found["phrase"]) == (order["id"], "examples", said)
    assert found["score"] >= 95
    again = post(client, auth, f"triggers/{order['id']}/examples", {"text": said})
    assert again.status_code == 200 and again.json["examples"].count(said) == 1  # not added twice


def test_unmatched_pages_newest_first_within_its_limit(app, client, auth, redis):
    made(client, auth, WHERE_ORDER)
    for i, text in enumerate(["qwzx one", "qwzx two", "qwzx three"]):
        form = inbound_form("+919820012345", text, sid=f"SM{i:032d}")
        assert signed_post(client, app, INBOUND, form).status_code == 200
    page = client.get("/api/v1/triggers/unmatched?limit=2", headers=auth).json
    assert [u["body"] for u in page] == ["qwzx three", "qwzx two"]
    assert all(u["handled_by"] is None for u in page)  # no fallback: nothing answered
    rest = client.get(f"/api/v1/triggers/unmatched?limit=2&before_id={page[-1]['inbound_id']}", headers=auth)
    assert [u["body"] for u in rest.json] == ["qwzx one"]
    for bad in ("limit=0", "limit=201", "limit=x", "before_id=0", "before_id=x"):
        answer = client.get(f"/api/v1/triggers/unmatched?{bad}", headers=auth)
        assert answer.status_code == 422, (bad, answer.json)
    assert client.get("/api/v1/triggers/unmatched").status_code == 401


def test_adding_an_example_refuses_unknown_ids_and_a_message_without_text(app, client, auth, redis, session):
    order = made(client, auth, WHERE_ORDER)
    fallback = made(client, auth, FALLBACK)
    for form in (
        inbound_form("+919820012345", "has the courier left yet"),
        inbound_form("+919820012345", "", MessageType="button", ButtonPayload="YES", ButtonText="Yes"),
        inbound_form("+919820012345", "long " * 120),
    ):
        assert signed_post(client, app, INBOUND, form).status_code == 200
    listed = client.get("/api/v1/triggers/unmatched", headers=auth).json
    long_id, text_id = [u["inbound_id"] for u in listed]
    button_id = session.scalar(select(InboundMessage.id).where(InboundMessage.button_payload == "YES"))
    path = f"triggers/{order['id']}/examples"

    unknown_trigger = post(client, auth, "triggers/999999/examples", {"text": "hello there"})
    assert unknown_trigger.status_code == 404, unknown_trigger.json
    unknown_message = post(client, auth, path, {"inbound_id": 999999})
    assert unknown_message.status_code == 404 and "inbound_id" in unknown_message.json["errors"]
    both = post(client, auth, path, {"text": "where is it", "inbound_id": text_id})
    neither = post(client, auth, path, {})
    assert both.status_code == neither.status_code == 422
    assert "text" in both.json["errors"] and "text" in neither.json["errors"]
    assert post(client, auth, path, {"text": ""}).status_code == 422
    assert post(client, auth, path, {"text": "x" * 501}).status_code == 422
    emoji = post(client, auth, path, {"text": "🙂🙂"})
    assert emoji.status_code == 422 and any(k.startswith("examples[") for k in emoji.json["errors"])
    no_text = post(client, auth, path, {"inbound_id": button_id})
    assert no_text.status_code == 422 and "no text" in no_text.json["errors"]["inbound_id"][0]
    too_long = post(client, auth, path, {"inbound_id": long_id})
    assert too_long.status_code == 422 and "longer than 500" in too_long.json["errors"]["inbound_id"][0]
    to_fallback = post(client, auth, f"triggers/{fallback['id']}/examples", {"inbound_id": text_id})
    assert to_fallback.status_code == 422 and "examples" in to_fallback.json["errors"]
    assert (
        client.get(f"/api/v1/triggers/{order['id']}", headers=auth).json["examples"]
        == WHERE_ORDER["examples"]
    )

    assert (
        post(client, auth, path, {"inbound_id": text_id}).json["examples"][-1] == "has the courier left yet"
    )
    assert client.post(f"/api/v1/{path}", json={"text": "where is it"}).status_code == 401


def test_the_openapi_document_describes_example_phrases_and_the_new_paths(client):
    spec = client.get("/api/v1/openapi.json").json
    trigger = spec["components"]["schemas"]["Trigger"]["properties"]
    assert trigger["examples"]["type"] == "array" and trigger["examples"]["items"]["maxLength"] == 500
    assert "similarity" in trigger["examples"]["description"]
    threshold = trigger["example_threshold"]
    assert (threshold["minimum"], threshold["maximum"]) == (1, 100) and threshold["nullable"] is True
    assert "examples" in trigger["match_type"]["enum"] and "examples" in trigger["match_type"]["description"]
    assert "opt" in spec["components"]["schemas"]["Match"]["properties"]
    unmatched = spec["paths"]["/api/v1/triggers/unmatched"]["get"]
    assert {p["name"] for p in unmatched["parameters"]} >= {"limit", "before_id"}
    assert "post" in spec["paths"]["/api/v1/triggers/{trigger_id}/examples"]
