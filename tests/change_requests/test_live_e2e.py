"""Issue 13, two (and more) people at once: one acts, the others' open pages follow without a
reload within the stated times — 2 s while something moves, 10 s while idle. Each watcher page
runs on Playwright's clock, moved forward by exactly the promised time; the engine runs in this
process, as a worker would."""

import re

import pytest
from playwright.sync_api import expect

from webapp.extensions import db
from webapp.services.runs import sweep

pytestmark = pytest.mark.e2e
IDLE_MS = 10_000
LIVE_MS = 2_000
NETWORK_MS = 4_000  # the check and the refresh themselves, once the time has come


@pytest.fixture
def person(browser, live_server):
    """person(user, clock=True): a signed-in browser context of its own (a second person)."""
    contexts = []

    def _open(user, *, clock=True):
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        if clock:
            page.clock.install()
        page.goto(f"{live_server}/login")
        page.get_by_label("Email").fill(user.email)
        page.get_by_label("Password").fill("password123")
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        page.evaluate("window.__sameDocument = true")
        return page

    yield _open
    for context in contexts:
        context.close()


def stays(page):
    """No reload happened since the page was opened."""
    assert page.evaluate("window.__sameDocument") is True


def switch(page, env):
    return page.get_by_role("switch", name=f"recommendations in {env}")


def drive():
    db.session.rollback()  # a fresh snapshot: the people's requests committed meanwhile
    sweep.drain()
    db.session.rollback()


def test_others_follow_an_add_a_stage_applying_by_itself_and_a_rollback(
    live_server, person, make, project, editor, viewer, reviewer, admin, pipeline
):
    flag = make.feature(project, "recommendations")
    flag_url = f"{live_server}/projects/{project.id}/flags/{flag.id}"

    lead = person(viewer)  # a team lead's wall screen: nothing in flight
    lead.goto(f"{live_server}/projects/{project.id}/pipelines/{pipeline.id}/board")
    lead.evaluate("window.__sameDocument = true")
    expect(lead.locator(".board-summary")).to_contain_text("0 in flight")
    expect(lead.locator("#change_watch")).to_have_attribute("data-interval", "10")

    inbox = person(reviewer)
    inbox.goto(f"{live_server}/notifications")
    inbox.evaluate("window.__sameDocument = true")
    expect(inbox.get_by_text("Nothing waits for you.")).to_be_visible()

    pm = person(editor, clock=False)  # acts on the flag page, in real time
    pm.goto(flag_url)
    pm.evaluate("window.__sameDocument = true")
    expect(pm.get_by_text("In a release pipeline")).to_have_count(0)
    pm.locator("#run_panel").get_by_label("Release pipeline").select_option(label="Release")
    pm.locator("#run_panel").get_by_role("button", name="Add to release pipeline").click()
    # Its own page, every region: the lock banner, locked switches, no override controls.
    expect(pm.get_by_role("status").filter(has_text="the pipeline owns")).to_be_visible(
        timeout=LIVE_MS + NETWORK_MS)
    expect(switch(pm, "Development")).to_be_disabled()
    expect(pm.get_by_text("Add a segment override")).to_have_count(0)
    stays(pm)

    lead.clock.fast_forward(IDLE_MS)  # an idle board wakes within 10 s
    expect(lead.locator(".board-summary")).to_contain_text("1 in flight", timeout=NETWORK_MS)
    expect(lead.get_by_role("link", name="recommendations")).to_be_visible()
    expect(lead.locator("#change_watch")).to_have_attribute("data-interval", "2")

    drive()  # Development applies by itself; Production opens a change request
    expect(switch(pm, "Development")).to_have_attribute("aria-checked", "true",
                                                       timeout=LIVE_MS + NETWORK_MS)
    expect(pm.locator("#run_panel").get_by_role("link", name="Awaiting approval")).to_be_visible()
    lead.clock.fast_forward(LIVE_MS)
    expect(lead.get_by_role("link", name="Awaiting approval: change request")).to_be_visible(
        timeout=NETWORK_MS)
    expect(lead.locator("#change_watch")).to_have_attribute("data-interval", "10")
    inbox.clock.fast_forward(IDLE_MS)
    expect(inbox.get_by_role("link", name="Inbox: 1 waiting")).to_be_visible(timeout=NETWORK_MS)
    expect(inbox.locator("#inbox")).to_contain_text("Change requests you may review")

    boss = person(admin, clock=False)
    boss.goto(flag_url)
    boss.locator("#run_panel").get_by_role("link", name="Roll back…").click()
    boss.locator("#run_panel").get_by_role("button", name="Yes, roll back").click()
    expect(boss.locator("#run_panel")).to_contain_text("rolled back")

    # The product manager's page (not reloaded) gives the flag back: banner gone, switches free.
    expect(pm.get_by_text("the pipeline owns")).to_have_count(0, timeout=IDLE_MS + NETWORK_MS)
    expect(switch(pm, "Development")).to_be_enabled()
    expect(switch(pm, "Development")).to_have_attribute("aria-checked", "false")
    lead.clock.fast_forward(IDLE_MS)
    expect(lead.locator(".board-summary")).to_contain_text("0 in flight", timeout=NETWORK_MS)
    inbox.clock.fast_forward(IDLE_MS)
    expect(inbox.get_by_text("Nothing waits for you.")).to_be_visible(timeout=NETWORK_MS)
    for page in (pm, lead, inbox):
        stays(page)


def test_a_committed_change_request_shows_on_the_requesters_open_pages(
    live_server, person, make, project, editor, reviewer, pipeline, to_production
):
    flag = make.feature(project, "recommendations")
    request = to_production(flag)
    pm = person(editor)
    pm.goto(f"{live_server}/projects/{project.id}/flags/{flag.id}")
    pm.evaluate("window.__sameDocument = true")
    expect(switch(pm, "Production")).to_have_attribute("aria-checked", "false")
    audit = pm.context.new_page()
    audit.clock.install()
    audit.goto(f"{live_server}/projects/{project.id}/audit")
    audit.evaluate("window.__sameDocument = true")

    lead = person(reviewer, clock=False)
    lead.goto(f"{live_server}/projects/{project.id}/change-requests/{request.id}")
    lead.get_by_role("button", name="Approve").click()
    expect(lead.get_by_text(f"You approved change request #{request.id}")).to_be_visible()
    lead.get_by_role("button", name="Commit changes").click()
    expect(lead.get_by_text("committed")).not_to_have_count(0)
    drive()

    pm.clock.fast_forward(IDLE_MS)  # nothing was moving: the idle rate applies
    expect(switch(pm, "Production")).to_have_attribute("aria-checked", "true",
                                                      timeout=NETWORK_MS)
    audit.clock.fast_forward(IDLE_MS)
    expect(audit.locator("#audit_log")).to_contain_text(
        re.compile(rf"Change request #{request.id}\b[^.]* committed"),
                                                        timeout=NETWORK_MS)
    stays(pm)
    stays(audit)
