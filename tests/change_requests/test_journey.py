"""Two people in a browser: a flag reaches Production (which needs one approval), a change request
appears; the one who added the flag cannot approve it; a second editor approves and commits; the
flag is on in Production and launched."""

import re

import pytest
from playwright.sync_api import expect

from tests.support.browser import CHROMIUM  # noqa: F401 - the browser fixtures need chromium

from .conftest import run_of


@pytest.mark.e2e
def test_a_second_editor_approves_and_commits_the_production_change(
        to_production, make, project, editor, reviewer, envs, browser, live_server, sign_in, page):
    flag = make.feature(project, "new_checkout")
    request = to_production(flag)  # the engine, in-process: Development applied, Production gated
    assert run_of(flag).status == "awaiting_approval"

    # The one who added the flag sees the request but may not approve it.
    sign_in(editor.email)
    page.goto(f"{live_server}/projects/{project.id}/flags")
    nav = page.get_by_role("navigation", name="Project")
    nav.get_by_role("link", name="Change requests").click()
    expect(page.get_by_role("heading", name="Change requests")).to_be_visible()
    page.get_by_role("link", name="new_checkout → Prod (Release)").click()
    expect(page.get_by_text("someone else has to review it")).to_be_visible()
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)

    # A second editor, in their own browser session.
    context = browser.new_context()
    context.set_default_timeout(10_000)
    other = context.new_page()
    other.goto(f"{live_server}/login")
    other.get_by_label("Email").fill(reviewer.email)
    other.get_by_label("Password").fill("password123")
    other.get_by_role("button", name="Sign in").click()
    other.wait_for_url(lambda url: "/login" not in url)
    other.goto(f"{live_server}/projects/{project.id}/change-requests")
    row = other.get_by_role("row", name=re.compile("new_checkout → Prod"))
    expect(row).to_contain_text("0 of 1")
    expect(row).to_contain_text("Release pipeline Release (flag added by editor@example.com)")
    row.get_by_role("link", name="new_checkout → Prod (Release)").click()

    diff = other.get_by_role("table", name="Changes")
    expect(diff).to_contain_text("new_checkout for everyone")
    expect(diff.locator("del")).to_have_text("off")
    expect(diff.locator("ins")).to_have_text("on")
    expect(other.get_by_role("button", name="Commit changes")).to_be_disabled()
    other.get_by_label("Comment (optional to approve").fill("Checked with support")
    other.get_by_role("button", name="Approve").click()
    expect(other.get_by_text(f"You approved change request #{request.id}")).to_be_visible()
    expect(other.locator(".cr-approvals")).to_have_text("1 of 1")
    other.screenshot(path="/tmp/cr_detail.png", full_page=True)
    other.get_by_role("button", name="Commit changes").click()
    expect(other.get_by_role("status").filter(has_text="the changes are applied")).to_be_visible()
    expect(other.locator(".cr-detail .toolbar .badge")).to_have_text("committed")
    expect(other.locator(".cr-facts")).to_contain_text("launched")

    other.get_by_role("link", name="new_checkout").first.click()
    expect(other.get_by_role("switch", name="new_checkout in Production")).to_have_attribute(
        "aria-checked", "true")
    # In the flag's history (the collapsed pipeline panel may say it too, hidden).
    expect(other.locator("#flag_history").get_by_text(
        re.compile("new_checkout launched")).first).to_be_visible()
    other.screenshot(path="/tmp/cr_flag_after.png", full_page=True)
    context.close()
    assert run_of(flag).status == "launched"
