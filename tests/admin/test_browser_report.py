"""The campaign report in a real browser: both charts draw from the report's JSON under the
content security policy, the range can change without a reload, and nothing runs from a
contact's name."""

from __future__ import annotations

from datetime import date, timedelta

from tests.admin.test_report_pages import sent_campaign
from tests.processes import wait_for


def test_a_report_draws_its_funnel_and_time_series(signed_in, session):
    page = signed_in
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    campaign, _ = sent_campaign(session)

    page.goto(f"{page.base}/admin/campaigns/{campaign.id}/report")
    page.wait_for_selector('[data-chart="funnel"][data-drawn="true"]')
    page.wait_for_selector('[data-chart="timeseries"][data-drawn="true"]')
    page.screens("report")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: the charts fit its width
    # the charts follow the new width once they have redrawn
    wait_for(
        lambda: page.evaluate("document.documentElement.scrollWidth") <= 390, 10, "the report to fit a phone"
    )
    page.screens("report-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    # Another range redraws the line chart in place, and the address keeps the choice.
    with page.expect_response(lambda r: "/report.json" in r.url and "preset=today" in r.url):
        page.select_option("select[name=preset]", "today")
    page.wait_for_selector('[data-chart="timeseries"][data-drawn="true"]')
    assert "preset=today" in page.url
    # A custom range asks for its dates first.
    assert not page.locator("input[name=start]").is_visible()
    page.select_option("select[name=preset]", "custom")
    today = date.today()
    page.fill("input[name=start]", (today - timedelta(days=2)).isoformat())
    page.fill("input[name=end]", today.isoformat())
    with page.expect_response(lambda r: "/report.json" in r.url and "preset=custom" in r.url) as answer:
        page.click("#series-form button[type=submit]")
    assert answer.value.ok
    page.wait_for_selector('[data-chart="timeseries"][data-drawn="true"]')
    # The drill-down shows the script-like name as text.
    page.click("#report-outcomes a:text('See who')")
    page.wait_for_selector("#recipients")
    assert page.locator("#recipients").inner_text().count("<img src=x onerror=alert(1)>") == 1
    page.screens("report-recipients")
    assert page.dialogs == []
    assert problems == []
