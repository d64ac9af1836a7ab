"""The admin's triggers, flows and post-campaign rules screens, through a signed-in client on a
real database: what the forms save is what the domain (and the API) would save."""

from __future__ import annotations

import html
import json
import re

import pytest
from markupsafe import escape
from sqlalchemy import select, update

from chatman.contacts import segments
from chatman.flows.models import Flow
from chatman.ledger.models import Message
from chatman.rules import engine
from chatman.rules.models import Rule
from chatman.timeutils import utcnow
from chatman.triggers import crud as triggers
from chatman.triggers.models import Trigger
from tests.factories import define, make_submitted_run

PRICE = {
    "name": "price",
    "match_type": "keyword",
    "patterns": "price\nhow much",
    "action": "reply",
    "reply_body": "Our prices start at 99.",
    "priority": "0",
    "cooldown_s": "0",
    "enabled": "on",
}
STEPS = [
    {"id": "city", "type": "ask", "text": "Your city?", "save_to": "city", "next": "thanks"},
    {"id": "thanks", "type": "message", "text": "Thanks!"},
]


def text_of(answer) -> str:
    return answer.get_data(as_text=True)


def errors_beside(page: str, field: str) -> list[str]:
    """The errors the page shows beside a field (the macros' data-error-for spans)."""
    spans = re.findall(rf'<span class="error" data-error-for="{re.escape(field)}">(.*?)</span>', page, re.S)
    return [html.unescape(s) for s in spans]


def all_of(session, model) -> list:
    session.expire_all()
    return list(session.scalars(select(model)))


def test_a_trigger_made_in_the_form_is_matched_as_the_api_matches(admin, session):
    empty = text_of(admin.get("/admin/triggers"))
    assert "No triggers yet" in empty and "/admin/triggers/new" in empty

    answer = admin.post("/admin/triggers/new", data={**PRICE, "csrf_token": admin.csrf})
    assert answer.status_code == 302, text_of(answer)
    (trigger,) = all_of(session, Trigger)
    assert (trigger.name, trigger.match_type, trigger.patterns) == ("price", "keyword", ["price", "how much"])
    assert (trigger.action, trigger.reply_body, trigger.enabled) == ("reply", "Our prices start at 99.", True)
    assert [c.trigger.id for c in triggers.trigger_index(session).candidates("what is the PRICE?")] == [
        trigger.id
    ]
    listed = text_of(admin.get("/admin/triggers"))
    assert "price, how much" in listed and "Our prices start at 99." in listed


def test_the_test_box_names_the_trigger_that_would_answer_with_its_score(admin, session):
    for form in (
        PRICE,
        {**PRICE, "name": "order", "match_type": "fuzzy", "patterns": "where is my order", "threshold": ""},
        {**PRICE, "name": "anything", "match_type": "exact", "patterns": "", "is_fallback": "on"},
        {**PRICE, "name": "offers", "patterns": "price list", "priority": "5"},
    ):
        answer = admin.post("/admin/triggers/new", data={**form, "csrf_token": admin.csrf})
        assert answer.status_code == 302, text_of(answer)

    page = text_of(
        admin.post("/admin/triggers/test", data={"text": "wher is my ordr", "csrf_token": admin.csrf})
    )
    assert re.search(r"Answered by <b data-answer>order</b>", page)
    assert "fuzzy" in page
    # The same answer as JSON, for the box's script; the API's /triggers/match agrees.
    asked = admin.post(
        "/admin/triggers/test",
        json={"text": "how much is it?"},
        headers={"X-CSRFToken": admin.csrf, "Accept": "application/json"},
    )
    assert asked.status_code == 200, text_of(asked)
    assert asked.json["trigger_name"] == "price" and asked.json["fallback"] is False
    assert asked.json["candidates"][0] | {"score": 100.0} == asked.json["candidates"][0]
    # Both match; the higher priority answers, and the page says why the other did not.
    both = text_of(
        admin.post("/admin/triggers/test", data={"text": "the price list?", "csrf_token": admin.csrf})
    )
    assert re.search(r"Answered by <b data-answer>offers</b>\.", both)
    rows = re.findall(
        r"<tr><td>(\w+)</td><td>keyword</td><td>100.0</td><td>(\d)</td>\s*<td>(.*?)</td></tr>", both
    )
    assert rows == [("offers", "5", "<b>answers</b>"), ("price", "0", "outranked")]
    nothing = text_of(admin.post("/admin/triggers/test", data={"text": "hello", "csrf_token": admin.csrf}))
    assert re.search(r"Answered by <b data-answer>anything</b> \(the fallback", nothing)
    empty = admin.post("/admin/triggers/test", data={"text": " ", "csrf_token": admin.csrf})
    assert empty.status_code == 422 and errors_beside(text_of(empty), "text")


def test_a_bad_regex_is_shown_beside_its_field_and_nothing_is_saved(admin, session):
    form = {**PRICE, "match_type": "regex", "patterns": r"^order \d+$" + "\n" + r"(?<=no)thanks"}
    answer = admin.post("/admin/triggers/new", data={**form, "csrf_token": admin.csrf})
    assert answer.status_code == 422
    page = text_of(answer)
    (reason,) = errors_beside(page, "patterns")
    assert reason.startswith("line 2 ((?<=no)thanks): invalid regex")
    assert "(?&lt;=no)thanks</textarea>" in page  # the form keeps what was typed
    assert all_of(session, Trigger) == []

    # The action's target is checked too, beside its own field.
    answer = admin.post(
        "/admin/triggers/new", data={**PRICE, "action": "flow", "flow_id": "", "csrf_token": admin.csrf}
    )
    assert answer.status_code == 422 and errors_beside(text_of(answer), "flow_id")
    assert all_of(session, Trigger) == []


def test_editing_a_trigger_to_start_a_flow_and_deleting_it(admin, session):
    admin.post(
        "/admin/flows/new", data={"name": "signup", "steps": json.dumps(STEPS), "csrf_token": admin.csrf}
    )
    (flow,) = all_of(session, Flow)
    admin.post("/admin/triggers/new", data={**PRICE, "csrf_token": admin.csrf})
    (trigger,) = all_of(session, Trigger)
    assert 'value="price"' in text_of(admin.get(f"/admin/triggers/{trigger.id}"))
    changed = {**PRICE, "name": "join", "action": "flow", "flow_id": str(flow.id), "csrf_token": admin.csrf}
    assert admin.post(f"/admin/triggers/{trigger.id}", data=changed).status_code == 302
    (trigger,) = all_of(session, Trigger)
    assert (trigger.name, trigger.action, trigger.flow_id, trigger.reply_body) == (
        "join",
        "flow",
        flow.id,
        None,
    )
    assert "trigger join" in text_of(admin.get("/admin/flows"))
    gone = admin.post(f"/admin/triggers/{trigger.id}/delete", data={"csrf_token": admin.csrf})
    assert gone.status_code == 302 and all_of(session, Trigger) == []


def test_a_flow_saved_from_the_editor_is_outlined(admin, session):
    assert "No flows yet" in text_of(admin.get("/admin/flows"))
    assert '"type": "ask"' in html.unescape(
        text_of(admin.get("/admin/flows/new"))
    )  # an example to start from
    form = {
        "name": "signup",
        "steps": json.dumps(STEPS),
        "timeout_s": "3600",
        "on_trigger": "interrupt",
        "timeout_message": "",
        "csrf_token": admin.csrf,
    }
    answer = admin.post("/admin/flows/new", data=form)
    assert answer.status_code == 302, text_of(answer)
    (flow,) = all_of(session, Flow)
    assert (flow.name, flow.timeout_s, flow.on_trigger) == ("signup", 3600, "interrupt")
    assert [s["id"] for s in flow.steps] == ["city", "thanks"]
    page = text_of(admin.get(f"/admin/flows/{flow.id}"))
    assert "saved to <code>city</code>" in page and "Then → thanks" in page and "Then the flow ends." in page
    assert "signup" in text_of(admin.get("/admin/flows"))
    assert admin.post(f"/admin/flows/{flow.id}/delete", data={"csrf_token": admin.csrf}).status_code == 302
    assert all_of(session, Flow) == []


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        (json.dumps([{**STEPS[0], "next": "nowhere"}]), "steps[0].next: refers to step 'nowhere'"),
        ('[{"id": "a", "type": "ask"', "steps: the definition is not valid JSON"),
    ],
)
def test_a_bad_flow_definition_shows_its_error_beside_it(admin, session, steps, reason):
    answer = admin.post("/admin/flows/new", data={"name": "signup", "steps": steps, "csrf_token": admin.csrf})
    assert answer.status_code == 422
    page = text_of(answer)
    assert any(e.startswith(reason) for e in errors_beside(page, "steps")), errors_beside(page, "steps")
    assert str(escape(steps)) in page  # kept in the textarea to be corrected
    assert all_of(session, Flow) == []


def test_a_rule_made_in_the_form_is_listed_dry_run_and_its_firings_shown(admin, session):
    define(session, tier="string")
    campaign, _, _, messages = make_submitted_run(session, 3)
    vip = segments.create_segment(session, {"name": "vip", "kind": "static"})
    session.commit()
    rules_url = f"/admin/campaigns/{campaign.id}/rules"
    assert "has no rules yet" in text_of(admin.get(rules_url))

    editor = text_of(admin.get(f"{rules_url}/new"))
    for name in ("name", "event", "actions-0-type", "actions-0-attribute", "actions-0-value", "enabled"):
        assert f'name="{name}"' in editor
    assert 'data-add-row="action-row"' in editor and "Save rule" in editor
    form = {
        "name": "read: warm",
        "event": "read",
        "actions-0-type": "set_attribute",
        "actions-0-attribute": "tier",
        "actions-0-value": "warm",
        "actions-1-type": "",  # an empty row is dropped
        "actions-2-type": "add_to_segment",
        "actions-2-segment_id": str(vip.id),
        "enabled": "on",
        "csrf_token": admin.csrf,
    }
    answer = admin.post(f"{rules_url}/new", data=form)
    assert answer.status_code == 302, text_of(answer)
    (rule,) = all_of(session, Rule)
    assert (rule.campaign_id, rule.name, rule.enabled, rule.condition) == (
        campaign.id,
        "read: warm",
        True,
        {"status": "read"},
    )
    assert rule.actions == [
        {"type": "set_attribute", "attribute": "tier", "value": "warm"},
        {"type": "add_to_segment", "segment_id": vip.id},
    ]
    listed = text_of(admin.get(rules_url))
    assert "read: warm" in listed and "set tier = warm; add to segment vip" in listed
    page = text_of(admin.get(f"/admin/rules/{rule.id}"))
    assert 'value="read" selected' in page and "It has not fired yet" in page

    now = utcnow()
    read = [m.id for m in messages[:2]]
    session.execute(update(Message).where(Message.id.in_(read)).values(status="read", read_at=now))
    session.commit()
    dry = text_of(admin.post(f"/admin/rules/{rule.id}/dry-run", data={"csrf_token": admin.csrf}))
    assert "<b data-would-fire>2</b> messages would fire it now; 0 already fired it" in dry
    assert "it would <b>set tier = warm; add to segment vip</b>" in dry
    for message in messages[:2]:
        assert f"<td>{message.id}</td>" in dry
    as_json = admin.post(
        f"/admin/rules/{rule.id}/dry-run",
        json={},
        headers={"X-CSRFToken": admin.csrf, "Accept": "application/json"},
    ).json
    assert (as_json["would_fire"], as_json["fired_before"]) == (2, 0)
    assert [s["message_id"] for s in as_json["sample"]] == read
    assert all(s["phone"] for s in as_json["sample"])

    engine.evaluate(session, read)  # what the status job does once a read arrives
    session.commit()
    page = text_of(admin.get(f"/admin/rules/{rule.id}"))
    firings = page.split('id="firing-list"')[1].split("</table>")[0]
    assert firings.count("<tr>") == 3  # a header and one row per firing
    assert "set_attribute: done" in firings and "add_to_segment: done" in firings
    for message in messages[:2]:
        assert f"<td>{message.id}</td>" in firings
    again = admin.post(f"/admin/rules/{rule.id}/dry-run", json={}, headers={"X-CSRFToken": admin.csrf}).json
    assert (again["would_fire"], again["fired_before"]) == (0, 2)


def test_a_rule_is_edited_and_its_mistakes_shown_beside_the_row(admin, session):
    define(session, score="number")
    campaign, _, _, _ = make_submitted_run(session, 1)
    rules_url = f"/admin/campaigns/{campaign.id}/rules"
    bad = {
        "name": "no reply",
        "event": "no_reply_within",
        "hours": "24",
        "actions-0-type": "set_dnd",
        "actions-0-reason": "quiet",
        "actions-1-type": "",  # rows keep their numbers: the mistake is shown beside row 2
        "actions-2-type": "set_attribute",
        "actions-2-attribute": "undefined_thing",
        "actions-2-value": "x",
        "csrf_token": admin.csrf,
    }
    answer = admin.post(f"{rules_url}/new", data=bad)
    assert answer.status_code == 422
    assert "is not a defined attribute" in " ".join(errors_beside(text_of(answer), "actions[2].attribute"))
    assert all_of(session, Rule) == []
    hours = admin.post(f"{rules_url}/new", data={**bad, "hours": "0", "actions-2-type": ""})
    assert hours.status_code == 422 and errors_beside(text_of(hours), "hours")

    good = {
        **bad,
        "actions-2-type": "increment_attribute",
        "actions-2-attribute": "score",
        "actions-2-by": "2",
    }
    assert admin.post(f"{rules_url}/new", data=good).status_code == 302
    (rule,) = all_of(session, Rule)
    assert rule.condition == {"no_reply_within": 24.0} and rule.enabled is False
    assert rule.actions[1] == {"type": "increment_attribute", "attribute": "score", "by": 2}
    page = text_of(admin.get(f"/admin/rules/{rule.id}"))
    assert 'value="no_reply_within" selected' in page and 'name="actions-1-by" value="2"' in page

    tapped = {"name": "tapped", "event": "tapped", "tapped": "Not interested", "actions-0-type": "clear_dnd"}
    assert admin.post(f"/admin/rules/{rule.id}", data={**tapped, "csrf_token": admin.csrf}).status_code == 302
    (rule,) = all_of(session, Rule)
    assert (rule.condition, rule.actions) == ({"tapped": "Not interested"}, [{"type": "clear_dnd"}])
    assert admin.post(f"/admin/rules/{rule.id}/delete", data={"csrf_token": admin.csrf}).status_code == 302
    assert all_of(session, Rule) == []


def test_a_post_without_a_csrf_token_is_refused(admin, session):
    campaign, _, _, _ = make_submitted_run(session, 1)
    posts = [
        ("/admin/triggers/new", PRICE),
        ("/admin/triggers/test", {"text": "price"}),
        ("/admin/flows/new", {"name": "signup", "steps": json.dumps(STEPS)}),
        (
            f"/admin/campaigns/{campaign.id}/rules/new",
            {"name": "r", "event": "read", "actions-0-type": "clear_dnd"},
        ),
    ]
    for path, form in posts:
        answer = admin.post(path, data=form)
        assert answer.status_code == 400, path
        assert "The form expired" in text_of(answer)
    assert all_of(session, Trigger) == all_of(session, Flow) == all_of(session, Rule) == []


def test_names_and_keywords_from_outside_are_escaped_in_the_list(admin, session):
    script = "<script>alert(1)</script>"
    form = {**PRICE, "name": script, "patterns": script, "reply_body": script}
    assert admin.post("/admin/triggers/new", data={**form, "csrf_token": admin.csrf}).status_code == 302
    page = text_of(admin.get("/admin/triggers"))
    assert script not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 3  # name, keyword, reply
    tested = text_of(admin.post("/admin/triggers/test", data={"text": script, "csrf_token": admin.csrf}))
    assert script not in tested and "Answered by <b data-answer>&lt;script&gt;" in tested
