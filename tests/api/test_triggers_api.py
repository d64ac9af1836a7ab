"""/triggers and /flows through the API: clear 4xx for every mistake, nothing half-written."""

from __future__ import annotations


def post(client, auth, path, body):
    return client.post(f"/api/v1/{path}", headers=auth, json=body)


def test_trigger_mistakes_are_refused_with_the_field_named(client, auth):
    base = {
        "name": "t",
        "match_type": "keyword",
        "patterns": ["hi"],
        "action": "reply",
        "reply_body": "Hello",
    }
    cases = [
        ({"match_type": "regex", "patterns": ["order[0-9"]}, "patterns[0]", "invalid regex: missing ]: [0-9"),
        ({"match_type": "regex", "patterns": [r"(a)\1"]}, "patterns[0]", "invalid regex"),
        ({"match_type": "fuzzy", "threshold": 140}, "threshold", "out of range"),
        ({"threshold": 80}, "threshold", "only a fuzzy trigger"),
        ({"patterns": []}, "patterns", "at least one pattern"),
        ({"patterns": ["🙂🙂"]}, "patterns[0]", "nothing is left to match"),
        ({"active_from": "9:00", "active_until": "18:00"}, "active_from", "not a time"),
        ({"active_from": "09:00"}, "active_from", "both"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"reply_body": None}, "reply_body", "needs reply_body"),
        ({"action": "flow"}, "flow_id", "existing flow"),
        ({"action": "enroll", "campaign_id": 99}, "campaign_id", "triggered or drip campaign"),
    ]
    for change, field, says in cases:
        answer = post(client, auth, "triggers", base | change)
        assert answer.status_code == 422, (change, answer.json)
        assert any(says in r for r in answer.json["errors"].get(field, [])), (change, answer.json)
    assert client.get("/api/v1/triggers", headers=auth).json == []
    made = post(client, auth, "triggers", base)
    assert made.status_code == 201
    assert post(client, auth, "triggers", base).status_code == 409  # same name
    assert client.get("/api/v1/triggers").status_code == 401


def test_match_endpoint_shows_the_trigger_a_message_would_fire(client, auth):
    post(
        client,
        auth,
        "triggers",
        {
            "name": "refund",
            "match_type": "keyword",
            "patterns": ["refund"],
            "action": "reply",
            "reply_body": "ok",
        },
    )
    post(
        client, auth, "triggers", {"name": "else", "is_fallback": True, "action": "reply", "reply_body": "?"}
    )
    refund = client.post("/api/v1/triggers/match", headers=auth, json={"text": "I want a REFUND!!"}).json
    other = client.post("/api/v1/triggers/match", headers=auth, json={"text": "hello"}).json
    assert refund["fallback"] is False and refund["candidates"][0]["score"] == 100
    assert other["fallback"] is True and other["trigger_id"] != refund["trigger_id"]


def test_flow_mistakes_are_refused_and_a_flow_in_use_cannot_be_deleted(client, auth):
    missing = post(
        client, auth, "flows", {"name": "f", "steps": [{"id": "a", "type": "ask", "text": "?", "next": "b"}]}
    )
    assert missing.status_code == 422 and "refers to step 'b'" in missing.json["errors"]["steps[0].next"][0]
    badtype = post(
        client,
        auth,
        "flows",
        {
            "name": "f",
            "steps": [{"id": "a", "type": "ask", "text": "?", "save_to": "age", "attribute_type": "int"}],
        },
    )
    assert (
        badtype.status_code == 422
        and "unknown attribute type" in badtype.json["errors"]["steps[0].attribute_type"][0]
    )
    assert post(client, auth, "flows", {"name": "f", "steps": [], "timeout_s": 5}).status_code == 422
    flow = post(client, auth, "flows", {"name": "f", "steps": [{"id": "a", "type": "message", "text": "hi"}]})
    assert flow.status_code == 201
    post(
        client,
        auth,
        "triggers",
        {
            "name": "go",
            "match_type": "exact",
            "patterns": ["go"],
            "action": "flow",
            "flow_id": flow.json["id"],
        },
    )
    assert client.delete(f"/api/v1/flows/{flow.json['id']}", headers=auth).status_code == 409
