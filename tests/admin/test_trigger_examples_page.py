"""Example phrases in the admin's trigger editor and its "test a message" box, through a
signed-in client on a real database: what the form saves is what the API would save, and
the box says which phrase won, with what score, or that the message asks to stop."""

from __future__ import annotations

import html
import re

from sqlalchemy import select

from chatman.triggers.models import Trigger
from tests.factories import make_submitted_run

ORDER = {
    "name": "where_order",
    "match_type": "keyword",  # the select's first choice, left as it is
    "patterns": "",
    "examples": "where is my order\n\n  order kab aayega  \ntrack my parcel",
    "example_threshold": "60",
    "action": "reply",
    "reply_body": "On its way.",
    "priority": "0",
    "cooldown_s": "0",
    "enabled": "on",
}
EXAMPLES = ["where is my order", "order kab aayega", "track my parcel"]


def text_of(answer) -> str:
    return answer.get_data(as_text=True)


def errors_beside(page: str, field: str) -> list[str]:
    spans = re.findall(rf'<span class="error" data-error-for="{re.escape(field)}">(.*?)</span>', page, re.S)
    return [html.unescape(s) for s in spans]


def textarea(page: str, name: str) -> str:
    found = re.search(rf'<textarea name="{name}"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, f"no textarea {name}"
    return html.unescape(found[1])


def triggers_of(session) -> list[Trigger]:
    session.expire_all()
    return list(session.scalars(select(Trigger).order_by(Trigger.id)))


def test_the_editor_saves_example_phrases_and_shows_them_again(admin, session):
    editor = text_of(admin.get("/admin/triggers/new"))
    assert "Example phrases (one per line)" in editor and "Example threshold" in editor
    assert '<textarea name="examples"' in editor and 'name="example_threshold"' in editor
    assert '<option value="examples"' in editor

    answer = admin.post("/admin/triggers/new", data={**ORDER, "csrf_token": admin.csrf})
    assert answer.status_code == 302, text_of(answer)
    (trigger,) = triggers_of(session)
    # Phrases and no patterns: a trigger of example phrases alone, whatever the select said.
    assert (trigger.match_type, trigger.patterns) == ("examples", [])
    assert (trigger.examples, trigger.example_threshold) == (EXAMPLES, 60.0)
    page = text_of(admin.get(f"/admin/triggers/{trigger.id}"))
    assert textarea(page, "examples") == "\n".join(EXAMPLES)
    assert 'name="example_threshold" value="60.0"' in page
    assert re.search(r'<option value="examples"\s+selected>', page)
    listed = text_of(admin.get("/admin/triggers"))
    assert "Example phrases only" in listed and "where is my order, order kab aayega" in listed

    # A keyword trigger keeps its phrases too; an emptied threshold goes back to the default.
    changed = {
        **ORDER,
        "match_type": "keyword",
        "patterns": "order",
        "examples": "where is my order\nmera parcel kahan hai",
        "example_threshold": "",
    }
    answer = admin.post(f"/admin/triggers/{trigger.id}", data={**changed, "csrf_token": admin.csrf})
    assert answer.status_code == 302, text_of(answer)
    (trigger,) = triggers_of(session)
    assert (trigger.match_type, trigger.patterns) == ("keyword", ["order"])
    assert (trigger.examples, trigger.example_threshold) == (
        ["where is my order", "mera parcel kahan hai"],
        None,
    )
    assert "and 2 example phrases" in text_of(admin.get("/admin/triggers"))


def test_a_bad_example_phrase_is_shown_beside_its_line_and_nothing_is_saved(admin, session):
    form = {**ORDER, "examples": "where is my order\n🙂🙂", "csrf_token": admin.csrf}
    answer = admin.post("/admin/triggers/new", data=form)
    assert answer.status_code == 422
    page = text_of(answer)
    (reason,) = errors_beside(page, "examples")
    assert reason.startswith("line 2 (🙂🙂): an example phrase needs words")
    assert textarea(page, "examples") == "where is my order\n🙂🙂"  # the form keeps what was typed
    too_long = admin.post("/admin/triggers/new", data={**form, "examples": "x" * 501})
    assert too_long.status_code == 422
    assert errors_beside(text_of(too_long), "examples")[0].startswith("line 1 (xxx")
    for threshold in ("0", "101", "sixty"):
        answer = admin.post(
            "/admin/triggers/new", data={**ORDER, "example_threshold": threshold, "csrf_token": admin.csrf}
        )
        assert answer.status_code == 422 and errors_beside(text_of(answer), "example_threshold"), threshold
    fallback = {**ORDER, "is_fallback": "on", "match_type": "exact", "csrf_token": admin.csrf}
    answer = admin.post("/admin/triggers/new", data=fallback)
    assert answer.status_code == 422 and "fallback" in errors_beside(text_of(answer), "examples")[0]
    assert triggers_of(session) == []


def test_the_test_box_shows_the_stage_the_phrase_and_the_score_that_won(admin, session):
    assert admin.post("/admin/triggers/new", data={**ORDER, "csrf_token": admin.csrf}).status_code == 302
    form = {"text": "mera order kab aayega", "csrf_token": admin.csrf}
    page = text_of(admin.post("/admin/triggers/test", data=form))
    assert re.search(r"Answered by <b data-answer>where_order</b>\.", page)
    found = re.search(
        r'<p data-stage="examples">Matched as <b>examples</b> by the example phrase '
        r"“<b data-phrase>(.*?)</b>”, score <b data-score>([\d.]+)</b>\.</p>",
        page,
    )
    assert found, page
    assert found[1] == "order kab aayega" and 60 <= float(found[2]) <= 100
    assert "data-opt=" not in page
    # The same as JSON, for the box's script.
    asked = admin.post(
        "/admin/triggers/test",
        json={"text": "mera order kab aayega"},
        headers={"X-CSRFToken": admin.csrf, "Accept": "application/json"},
    ).json
    assert (asked["stage"], asked["phrase"], asked["score"]) == (
        "examples",
        "order kab aayega",
        float(found[2]),
    )
    assert asked["opt"]["kind"] is None
    assert (
        asked["candidates"][0] | {"stage": "examples", "phrase": "order kab aayega", "chosen": True}
        == (asked["candidates"][0])
    )


def test_the_test_box_says_when_a_message_asks_to_stop(admin, session):
    stop_words = {
        **ORDER,
        "name": "messages",
        "examples": "",
        "patterns": "messages",
        "example_threshold": "",
    }
    assert admin.post("/admin/triggers/new", data={**stop_words, "csrf_token": admin.csrf}).status_code == 302
    form = {"text": "please stop sending me these messages", "csrf_token": admin.csrf}
    page = text_of(admin.post("/admin/triggers/test", data=form))
    verdict = re.search(r'<p class="answer" data-opt="opt_out">(.*?)</p>', page, re.S)
    assert verdict and "opted out" in verdict[1] and "score" in verdict[1]
    assert "Answered by" not in page and "No trigger answers a message that asks to stop" in page
    asked = admin.post(
        "/admin/triggers/test",
        json={"text": "please stop sending me these messages"},
        headers={"X-CSRFToken": admin.csrf, "Accept": "application/json"},
    ).json
    assert asked["opt"]["kind"] == "opt_out" and asked["trigger_id"] is None and asked["candidates"] == []


def test_example_phrases_from_outside_are_escaped(admin, session):
    script = "<script>alert(1)</script> where is my order"
    form = {**ORDER, "examples": script, "csrf_token": admin.csrf}
    assert admin.post("/admin/triggers/new", data=form).status_code == 302
    (trigger,) = triggers_of(session)
    for page in (
        text_of(admin.get(f"/admin/triggers/{trigger.id}")),
        text_of(admin.get("/admin/triggers")),
        text_of(admin.post("/admin/triggers/test", data={"text": script, "csrf_token": admin.csrf})),
    ):
        assert (
            "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; where is my order" in page
        )


def test_a_rule_does_not_offer_example_phrases(admin, session):
    campaign, _, _, _ = make_submitted_run(session, 1)
    session.commit()
    editor = text_of(admin.get(f"/admin/campaigns/{campaign.id}/rules/new"))
    assert 'name="reply_match_type"' in editor and '<option value="keyword"' in editor
    assert '<option value="examples"' not in editor
