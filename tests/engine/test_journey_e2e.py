"""A product manager adds a flag to a two-stage pipeline on the flag's page, sees it enabled in
Development, advances it, sees it enabled in Staging, rolls it back, and sees both restored.
The engine runs in this process: a real RQ SimpleWorker in burst mode."""

import pytest
from playwright.sync_api import expect

from webapp.extensions import db
from webapp.services.pages import flag_runs

pytestmark = pytest.mark.e2e


def switch(page, flag, env):
    return page.get_by_role("switch", name=f"{flag} in {env}")


def test_add_advance_and_roll_back(page, live_server, sign_in, make, project, editor, two_stage,
                                   work):
    flag = make.feature(project, "new_checkout")
    sign_in(editor.email)
    page.goto(f"{live_server}/projects/{project.id}/flags/{flag.id}")
    panel = page.locator("#run_panel")
    panel.get_by_label("Release pipeline").select_option(label="Two step")
    panel.get_by_role("button", name="Add to release pipeline").click()
    expect(panel.get_by_role("button", name="Advance now")).to_be_visible()
    expect(panel.get_by_role("list", name="Stages")).to_contain_text("Dev")

    work()
    page.reload()
    expect(switch(page, "new_checkout", "Development")).to_have_attribute("aria-checked", "true")
    expect(switch(page, "new_checkout", "Staging")).to_have_attribute("aria-checked", "false")
    expect(switch(page, "new_checkout", "Development")).to_be_disabled()  # the pipeline owns it

    page.locator("#run_panel").get_by_role("button", name="Advance now").click()
    expect(page.locator("#run_panel")).to_contain_text("due now")
    work()
    page.reload()
    expect(switch(page, "new_checkout", "Staging")).to_have_attribute("aria-checked", "true")

    page.locator("#run_panel").get_by_role("link", name="Roll back the launch…").click()
    page.locator("#run_panel").get_by_role("button", name="Yes, roll back").click()
    expect(page.locator("#run_panel")).to_contain_text("rolled back")
    page.reload()
    expect(switch(page, "new_checkout", "Development")).to_have_attribute("aria-checked", "false")
    expect(switch(page, "new_checkout", "Staging")).to_have_attribute("aria-checked", "false")
    db.session.rollback()  # end the test's read snapshot: the rollback request committed since
    assert flag_runs.flag_run(project.id, flag.id).run.status == "rolled_back"

