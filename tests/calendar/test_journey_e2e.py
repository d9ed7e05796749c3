"""A project admin sets Production's deployment window, watches a flag wait on the board with
its next opening shown, freezes Production, stops the line, and lifts both; the banner comes
and goes on the board and the flag page. The server's clock is the test's (time-machine,
frozen on a Monday); the engine runs in this process, as a worker would."""

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.calendar.conftest import MONDAY
from webapp.extensions import db
from webapp.services.actors import Actor
from webapp.services.pages import flag_runs
from webapp.services.runs import controls, sweep

pytestmark = pytest.mark.e2e

NEXT_OPENING = "Production: next window Tuesday 09:00 Europe/Berlin"


def test_window_freeze_stop_and_lift(monday, page, live_server, sign_in, make, project, admin,
                                     editor, envs, release):
    flag = make.feature(project, "new_checkout")
    controls.add_flag(project, release.id, flag.id, Actor.for_user(editor))
    sweep.drain()  # Development at once; Production due in an hour (12:00 in Berlin)
    db.session.rollback()
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(admin.email)
    base = f"{live_server}/projects/{project.id}"

    # Set a window: Production opens Monday to Thursday, 09:00–10:00 in Berlin.
    page.goto(f"{base}/flags")
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Calendar").click()
    expect(page.get_by_role("heading", name="Release calendar")).to_be_visible()
    page.get_by_text("Set a window of Production").click()  # opens its form
    window = page.get_by_role("form", name="Deployment window of Production")
    for day in ("Monday", "Tuesday", "Wednesday", "Thursday"):
        window.get_by_label(day).check()
    window.get_by_label("Friday").uncheck()
    window.get_by_label("Opens at").fill("09:00")
    window.get_by_label("Closes at").fill("08:00")
    window.get_by_label("Time zone").select_option("Europe/Berlin")
    window.get_by_role("button", name="Save the window").click()
    expect(page.locator("#window_list")).to_contain_text("Close after it opens")  # beside it
    window = page.get_by_role("form", name="Deployment window of Production")
    expect(window.get_by_label("Closes at")).to_have_attribute("aria-invalid", "true")
    window.get_by_label("Closes at").fill("10:00")
    window.get_by_role("button", name="Save the window").click()
    production = page.locator("#window_list article", has_text="Production")
    expect(production).to_contain_text("Open Monday–Thursday 09:00–10:00 (Europe/Berlin).")
    expect(production).to_contain_text("Next window Tuesday 09:00 Europe/Berlin.")

    # Watch the flag wait on the board: when its hour is up, Production is closed.
    page.goto(f"{base}/pipelines/{release.id}/board")
    card = page.locator(".flag-card", has_text="new_checkout")
    expect(card).to_contain_text("Waiting")
    page.evaluate("window.__sameDocument = true")
    monday.shift(timedelta(hours=1))
    sweep.drain()
    db.session.rollback()
    expect(card).to_contain_text(NEXT_OPENING, timeout=10_000)  # the board polls itself
    assert page.evaluate("window.__sameDocument") is True
    card.get_by_role("link", name="new_checkout").click()
    panel = page.locator("#run_panel")
    expect(panel).to_contain_text(NEXT_OPENING)
    expect(panel).to_contain_text("Expected launch: Tuesday 09:00 Europe/Berlin.")

    # Freeze Production for three days.
    page.get_by_role("navigation", name="Project").get_by_role("link", name="Calendar").click()
    freeze = page.get_by_role("form", name="Plan a freeze")
    freeze.get_by_label("From").fill((MONDAY + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    freeze.get_by_label("Until").fill((MONDAY + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M"))
    freeze.get_by_label("Reason").fill("Holiday freeze")
    freeze.get_by_label("Production").check()
    freeze.get_by_role("button", name="Plan the freeze").click()
    freezes = page.locator("#freeze_list")
    expect(freezes.get_by_role("row", name="Holiday freeze")).to_contain_text("In force")
    banner = page.locator("#calendar_banner")
    page.goto(f"{base}/flags/{flag.id}")
    expect(banner).to_contain_text("Frozen until 10 January 2030 10:00 UTC.")
    expect(banner).to_contain_text("Production, by admin@example.com: Holiday freeze.")
    expect(page.locator("#run_panel")).to_contain_text("Held by a freeze of Production")

    # Stop the line during an incident.
    page.goto(f"{base}/settings/calendar")
    stop = page.locator("#line_stop")
    stop.get_by_role("button", name="Stop the line").click()
    expect(stop.get_by_text("Say why the line stops")).to_be_visible()  # nothing stopped yet
    stop.get_by_label("Why stop the line?").fill("Incident 4711: checkout errors")
    stop.get_by_role("button", name="Stop the line").click()
    expect(page.locator("#line_stop")).to_contain_text("This project's line is stopped")
    page.goto(f"{base}/pipelines/{release.id}/board")
    expect(banner).to_contain_text("The line is stopped.")
    expect(banner).to_contain_text("Incident 4711: checkout errors")
    expect(banner).to_contain_text("Holiday freeze")

    # Lift both: the banner goes, the flag waits for its window again.
    page.goto(f"{base}/settings/calendar")
    page.get_by_role("button", name="Lift the stop").click()
    expect(page.locator("#line_stop").get_by_role("button", name="Stop the line")).to_be_visible()
    expect(page.locator("#line_stop")).not_to_contain_text("is stopped")
    page.get_by_role("button", name="Lift the freeze Holiday freeze").click()
    expect(page.locator("#freeze_list")).to_contain_text("No freeze in force or planned.")
    page.goto(f"{base}/pipelines/{release.id}/board")
    expect(page.locator("#calendar_banner")).to_be_empty()
    expect(page.locator(".flag-card", has_text="new_checkout")).not_to_contain_text("Held")
    sweep.drain()
    db.session.rollback()
    run = flag_runs.flag_run(project.id, flag.id).run
    assert run.status == "waiting" and run.stage_position == 1  # Production not yet applied
