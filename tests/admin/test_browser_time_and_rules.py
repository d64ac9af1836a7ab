"""Done when 3: a recurring campaign (its next occurrences in its own zone), a 3-step drip
and a post-campaign rule, made through the editors only, in a real browser. And a profile
name written as HTML is shown as text on the contact page, with no script run."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.factories import define, make_audience, make_contact

XSS = "<img src=x onerror=alert(1)>"


def test_recurring_drip_and_rule_through_the_editors(signed_in, session):
    page, base, shot = signed_in, signed_in.base, signed_in.screens
    make_audience(session, 3)
    define(session, engaged="string")

    page.goto(f"{base}/admin/campaigns/new?kind=recurring")
    page.fill("input[name=name]", "Weekly digest")
    page.locator("select[name=include_segments] option").first.click()
    page.check("input[name=content][value=text]")
    page.fill("textarea[name=body]", "This week's picks for you")
    page.fill("input[name=rec_interval]", "1")
    page.select_option("select[name=rec_every]", "week")
    page.check("input[name=rec_weekdays][value=mon]")
    page.check("input[name=rec_weekdays][value=thu]")
    page.fill("input[name=rec_at]", "09:30")
    page.fill("input[name=rec_start]", "2031-01-06")
    page.fill("input[name=timezone]", "Asia/Kolkata")
    shot("recurring-editor")
    page.click("button:has-text('Save campaign')")
    occurrences = page.locator("#occurrences")
    expect(occurrences).to_contain_text("Asia/Kolkata")
    expect(occurrences.locator("li").nth(0)).to_have_text("Mon 06 Jan 2031, 09:30")
    expect(occurrences.locator("li").nth(1)).to_have_text("Thu 09 Jan 2031, 09:30")
    shot("recurring-campaign")

    page.goto(f"{base}/admin/campaigns/new?kind=drip")
    page.fill("input[name=name]", "Welcome series")
    page.locator("select[name=include_segments] option").first.click()
    steps = [
        ("Welcome to the club!", None, None),
        ("Here is what members get", "1", "not_replied"),
        ("Last call: 10% off your first order", "3", None),
    ]
    for n, (text, days, condition) in enumerate(steps):
        page.check(f"input[name=step-{n}-content][value=text]")
        page.fill(f"textarea[name=step-{n}-body]", text)
        if days:
            page.fill(f"input[name=step-{n}-wait_amount]", days)
            page.select_option(f"select[name=step-{n}-wait_unit]", "days")
            page.fill(f"input[name=step-{n}-at]", "10:00")
        if condition:
            page.select_option(f"select[name=step-{n}-condition]", condition)
    page.fill("input[name=timezone]", "Asia/Kolkata")
    shot("drip-editor")
    page.click("button:has-text('Save campaign')")
    drip = page.locator("#steps .step")
    expect(drip).to_have_count(3)
    expect(drip.nth(1)).to_contain_text("after 1 days (from the previous step) at 10:00")
    expect(drip.nth(1)).to_contain_text("only if not replied (step 1)")
    expect(drip.nth(2)).to_contain_text("Last call")
    shot("drip-campaign")

    page.click("a:has-text('Post-campaign rules')")
    page.click("a:has-text('New rule')")
    fill_rule(page)
    shot("rule-editor")
    page.click("button:has-text('Save rule')")
    expect(page.locator(".flash")).to_contain_text("Rule Tag readers saved")
    expect(page.locator("select[name=event]")).to_have_value("read")
    expect(page.locator("select[name=actions-0-attribute]")).to_have_value("engaged")
    page.go_back()
    page.go_back()
    page.reload()
    expect(page.locator("main")).to_contain_text("Tag readers")
    shot("rules")
    assert page.dialogs == []


def fill_rule(page) -> None:
    """The rule editor's own fields: when a message is read, tag the contact."""
    page.fill("input[name=name]", "Tag readers")
    page.select_option("select[name=event]", "read")
    page.select_option("select[name=actions-0-type]", "set_attribute")
    page.select_option("select[name=actions-0-attribute]", "engaged")
    page.fill("input[name=actions-0-value]", "yes")


def test_a_profile_name_written_as_html_is_text_on_the_contact_page(signed_in, session):
    page, base = signed_in, signed_in.base
    contact = make_contact(session, name=XSS)
    page.goto(f"{base}/admin/contacts/{contact.id}")
    expect(page.locator("h1")).to_contain_text(XSS)
    page.goto(f"{base}/admin/contacts")
    expect(page.locator("table")).to_contain_text(XSS)
    assert page.locator("img[src=x]").count() == 0
    assert page.dialogs == []
