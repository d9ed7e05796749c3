"""A product manager turns a flag on in Staging from the flags table, then finds the change in the
flag's history."""

import pytest
from playwright.sync_api import expect


@pytest.mark.e2e
def test_toggle_in_staging_then_see_it_in_the_history(
    page, live_server, sign_in, editor, project, flag, envs
):
    sign_in(editor.email)
    page.goto(f"{live_server}/projects/{project.id}/flags")
    expect(page.get_by_role("heading", name="Flags")).to_be_visible()

    switch = page.get_by_role("switch", name="checkout in Staging")
    expect(switch).to_have_attribute("aria-checked", "false")
    switch.click()
    # htmx swapped the row in place: same page, the switch is on, the neighbours are not
    expect(page.get_by_role("switch", name="checkout in Staging")).to_have_attribute(
        "aria-checked", "true")
    expect(page.get_by_role("switch", name="checkout in Production")).to_have_attribute(
        "aria-checked", "false")
    assert page.url.endswith(f"/projects/{project.id}/flags")

    page.get_by_role("link", name="checkout", exact=True).click()
    expect(page.get_by_role("heading", name="checkout")).to_be_visible()
    history = page.locator("#flag_history")
    expect(history.get_by_role("cell", name="checkout enabled for everyone in Staging")
           ).to_be_visible()
    expect(history.get_by_role("cell", name=editor.email)).to_be_visible()
    page.screenshot(path="/tmp/platform-journey-flag-page.png", full_page=True)
