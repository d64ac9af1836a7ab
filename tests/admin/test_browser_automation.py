"""Triggers and post-campaign rules in a real browser, under the content security policy: the
"test a message" box and the dry run answer in place, and the rule editor's action rows show
only the inputs their action needs."""

from __future__ import annotations

from sqlalchemy import select, update

from chatman.ledger.models import Message
from chatman.rules.models import Rule
from chatman.timeutils import utcnow
from tests.factories import define, make_submitted_run

SCRIPT = "<script>alert(1)</script>"


def test_trigger_test_box_a_flow_and_a_rule_with_its_dry_run_in_the_browser(signed_in, session):
    page = signed_in
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))

    page.goto(f"{page.base}/admin/triggers/new")
    assert not page.locator("input[name=threshold]").is_visible()  # fuzzy only
    page.select_option("select[name=match_type]", "fuzzy")
    assert page.locator("input[name=threshold]").is_visible()
    page.select_option("select[name=match_type]", "keyword")
    page.fill("input[name=name]", SCRIPT)
    page.fill("textarea[name=patterns]", "price\nhow much")
    page.fill("textarea[name=reply_body]", "From 99.")
    page.click("button:text('Save trigger')")
    page.wait_for_selector("#trigger-list")
    page.fill("#trigger-test input[name=text]", "how much is it?")
    with page.expect_response(lambda r: r.url.endswith("/admin/triggers/test")):
        page.click("#trigger-test button[type=submit]")
    page.wait_for_selector("#trigger-test-result [data-answer]")
    assert page.locator("#trigger-test-result [data-answer]").inner_text() == SCRIPT
    assert page.url.endswith("/admin/triggers")  # answered in place
    page.screens("triggers")

    # The flow editor starts from an example; saved as it is, it is outlined step by step.
    page.goto(f"{page.base}/admin/flows/new")
    page.fill("input[name=name]", "city survey")
    page.click("button:text('Save flow')")
    page.wait_for_selector("#flow-outline li.step")
    assert page.locator("#flow-outline li.step").count() == 3
    page.screens("flow")

    define(session, tier="string")
    campaign, _, _, messages = make_submitted_run(session, 2)
    session.execute(
        update(Message).where(Message.id == messages[0].id).values(status="read", read_at=utcnow())
    )
    session.commit()
    page.goto(f"{page.base}/admin/campaigns/{campaign.id}/rules")
    page.click("a:text('New rule')")
    page.fill("input[name=name]", "read: warm")
    page.select_option("select[name=event]", "read")
    assert not page.locator("input[name=hours]").is_visible()
    page.select_option("select[name='actions-0-type']", "set_attribute")
    page.select_option("select[name='actions-0-attribute']", "tier")
    page.fill("input[name='actions-0-value']", "warm")
    assert not page.locator("select[name='actions-0-segment_id']").is_visible()
    page.click("button:text('Add an action')")
    assert not page.locator("input[name='actions-1-reason']").is_visible()  # until its action is chosen
    page.select_option("select[name='actions-1-type']", "set_dnd")
    page.fill("input[name='actions-1-reason']", "warm_lead")
    page.click("button:text('Save rule')")
    page.wait_for_selector("#rule-dry-run")
    session.expire_all()
    (rule,) = session.scalars(select(Rule)).all()
    assert rule.condition == {"status": "read"}
    assert rule.actions == [
        {"type": "set_attribute", "attribute": "tier", "value": "warm"},
        {"type": "set_dnd", "reason": "warm_lead"},
    ]
    with page.expect_response(lambda r: r.url.endswith(f"/admin/rules/{rule.id}/dry-run")):
        page.click("#rule-dry-run button[type=submit]")
    page.wait_for_selector("#dry-run-result [data-would-fire]")
    assert page.locator("#dry-run-result [data-would-fire]").inner_text() == "1"
    assert "set tier = warm; set DND (warm_lead)" in page.locator("#dry-run-result").inner_text()
    page.screens("rule")
    assert page.dialogs == []
    assert problems == []
