"""Done when 1: a marketer who has never seen the API imports contacts, builds a segment,
writes a template, launches a broadcast through the simulator and reads its report, in a
real browser (Debian's Chromium), with a real worker and clock behind the served app."""

from __future__ import annotations

from playwright.sync_api import expect

CSV = (
    "Mobile,Name,City,Orders\n"
    "+91 98200 10001,Asha,Pune,4\n"
    "+91 98200 10002,Ravi,Pune,2\n"
    "+91 98200 10003,Meera,Goa,7\n"
    "not a phone,Broken,Pune,1\n"
    "+91 98200 10004,Kiran,Pune,three\n"
    "+91 98200 10005,Dev,Pune,5\n"
)


def test_import_segment_template_broadcast_and_report(signed_in):
    page, base, shot = signed_in, signed_in.base, signed_in.screens
    shot("dashboard")

    # CSV import: the columns previewed, a background job, its progress and the refused rows.
    page.goto(f"{base}/admin/contacts/import")
    page.set_input_files(
        "input[name=file]", files=[{"name": "contacts.csv", "mimeType": "text/csv", "buffer": CSV.encode()}]
    )
    expect(page.locator("#import-table select[data-column=Mobile]")).to_have_value("phone")
    expect(page.locator("#import-table")).to_contain_text("Meera")
    shot("import-mapping")
    page.click("button:has-text('Import')")
    expect(page.locator(".progress[aria-valuenow='100']")).to_be_visible()
    errors = page.locator("#row-errors")
    expect(errors).to_contain_text("not a phone")
    expect(errors).to_contain_text("three")
    expect(page.locator("#import-report")).to_contain_text("Created")
    shot("import-report")

    # A segment from the rule builder, its count following each change.
    page.goto(f"{base}/admin/segments/new")
    page.fill("input[name=name]", "Pune buyers")
    condition = page.locator("#rule-builder .cond").first
    condition.locator("select[aria-label=Field]").select_option("attributes.city")
    condition.locator("input[aria-label=Value]").fill("Pune")
    expect(page.locator("#rule-count")).to_have_text("3")  # Asha, Ravi, Dev (Kiran was refused)
    page.click("#rule-builder button:has-text('+ Condition')")
    second = page.locator("#rule-builder .cond").nth(1)
    second.locator("select[aria-label=Field]").select_option("attributes.orders")
    second.locator("select[aria-label=Operator]").select_option("gte")
    second.locator("input[aria-label=Value]").fill("3")
    expect(page.locator("#rule-count")).to_have_text("2")  # Asha and Dev
    expect(page.locator("#rule-sample")).to_contain_text("Asha")
    shot("segment-builder")
    page.click("button:has-text('Save segment')")
    expect(page.locator("#segment-count")).to_have_text("2")

    # A template, previewed for a real contact.
    page.goto(f"{base}/admin/templates/new")
    page.fill("input[name=name]", "sale_announcement")
    page.fill("textarea[name=body]", "Hi {{name}}, the Pune sale starts today!")
    page.select_option("select[name=status]", "approved")
    expect(page.locator("#template-preview")).to_have_text("Hi Asha, the Pune sale starts today!")
    shot("template-editor")
    page.click("button:has-text('Save template')")
    expect(page.locator("table")).to_contain_text("sale_announcement")

    # A one-time broadcast to the segment: pre-flight, launch, progress to 100% live.
    page.goto(f"{base}/admin/campaigns/new?kind=one_time")
    page.fill("input[name=name]", "Pune sale")
    page.select_option("select[name=include_segments]", label="Pune buyers")
    page.select_option("select[name=template_id]", label="sale_announcement (en, approved)")
    page.click("button:has-text('Save campaign')")
    expect(page.locator("#preflight")).to_contain_text("2 of 2 contacts")
    shot("campaign-preflight")
    page.click("#launch")
    expect(page.locator(".flash")).to_contain_text("Launched")
    page.evaluate("window.stillTheSamePage = true")
    progress = page.locator("#campaign-progress")
    expect(progress.locator(".progress")).to_have_attribute("aria-valuenow", "100", timeout=60_000)
    expect(progress.locator("[data-bind=sent]")).to_have_text("2")
    expect(progress.locator("[data-bind=delivered]")).to_have_text("2")
    assert page.evaluate("window.stillTheSamePage") is True, "the page reloaded to show progress"
    shot("campaign-sent")

    # Its report, drawn as charts.
    page.click("a:has-text('Report')")
    charts = page.locator("[data-chart]")
    expect(charts).to_have_count(2)  # the funnel and the time series
    for n in range(2):
        expect(charts.nth(n)).to_have_attribute("data-drawn", "true")
    shot("campaign-report")

    # The same screens on a phone: nothing wider than the screen but tables, which scroll.
    page.set_viewport_size({"width": 390, "height": 844})
    report = page.url
    for url in (f"{base}/admin/", f"{base}/admin/contacts", f"{base}/admin/campaigns", report):
        page.goto(url)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), url
    page.click("label.menu-button")
    expect(page.locator("nav.menu a:has-text('Inbox')")).to_be_visible()
    shot("phone-menu")
    assert page.dialogs == []
