"""The calendar's pages as people see them, on a laptop (1366 px) and a phone (390 px): nothing
wider than the screen while a window, a freeze and a stopped line show everywhere; every field
has a label. With RAILYARD_SHOTS=<folder> each page is also saved as a PNG there."""

import os
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.calendar.conftest import MONDAY
from webapp.extensions import db
from webapp.services.actors import SYSTEM, Actor
from webapp.services.runs import calendar, controls, sweep

pytestmark = pytest.mark.e2e

WIDTHS = (1366, 390)


def test_calendar_pages_fit_the_screen_and_label_every_field(
    monday, page, live_server, sign_in, make, project, admin, editor, envs, release
):
    make.user(site_admin=True, email="root@example.com")
    flag = make.feature(project, "new_checkout_with_a_rather_long_name_for_phones")
    controls.add_flag(project, release.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    calendar.set_windows(envs["Production"].id, "Europe/Berlin",
                         [calendar.Window(d, 9 * 60, 10 * 60) for d in range(4)], SYSTEM)
    monday.shift(timedelta(hours=1))
    sweep.drain()  # held: Production's window is closed
    calendar.create_freeze(SYSTEM, organisation_id=project.organisation_id,
                           project_id=project.id, starts_at=MONDAY,
                           ends_at=MONDAY + timedelta(days=3),
                           reason="Holiday freeze: nothing ships while the team is away",
                           environment_ids=[envs["Production"].id, envs["Staging"].id])
    calendar.stop_line(SYSTEM, organisation_id=project.organisation_id, project_id=project.id,
                       reason="Incident 4711: checkout errors above 2 % since 10:40")
    db.session.rollback()
    base = f"{live_server}/projects/{project.id}"
    pages = {
        "calendar": f"{base}/settings/calendar",
        "board": f"{base}/pipelines/{release.id}/board",
        "flag": f"{base}/flags/{flag.id}",
        "pipeline": f"{base}/pipelines/{release.id}",
        "flags": f"{base}/flags",
    }
    shots = os.environ.get("RAILYARD_SHOTS")
    sign_in(admin.email)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for name, url in pages.items():
            page.goto(url)
            expect(page.get_by_text("line is stopped").first).to_be_visible()
            page.wait_for_load_state("networkidle")
            _fits(page, width, name, whole=name == "calendar")
            if shots:
                page.screenshot(path=f"{shots}/{name}-{width}.png", full_page=True)
        page.goto(pages["calendar"])
        unlabelled = page.evaluate("""() => [...document.querySelectorAll(
            'main input:not([type=hidden]), main select, main textarea')]
            .filter(e => !e.labels.length && !e.getAttribute('aria-label')).map(e => e.name)""")
        assert unlabelled == []
    # A bad window answers beside its field, on a phone too.
    page.goto(pages["calendar"])
    page.get_by_text("Set a window of Staging").click()
    window = page.get_by_role("form", name="Deployment window of Staging")
    window.get_by_label("Opens at").fill("16:00")
    window.get_by_label("Closes at").fill("09:00")
    window.get_by_role("button", name="Save the window").click()
    expect(page.locator("#window_list")).to_contain_text("Close after it opens")
    _fits(page, 390, "calendar with an error")
    if shots:
        page.screenshot(path=f"{shots}/calendar-error-390.png", full_page=True)
    page.context.clear_cookies()  # sign out
    sign_in("root@example.com")
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        page.goto(f"{live_server}/admin/calendar")
        expect(page.get_by_role("heading", name="Organisation's release calendar")).to_be_visible()
        _fits(page, width, "organisation")
        if shots:
            page.screenshot(path=f"{shots}/organisation-{width}.png", full_page=True)


MINE = ("#calendar_banner, .timeline-calendar, .expected-launch, #calendar_page, "
        "#organisation_calendar")


def _fits(page, width: int, name: str, whole: bool = True) -> None:
    """Nothing wider than the screen: the whole page (the calendar's own pages), or what the
    calendar adds to other pages (their own layout is theirs)."""
    if not whole:
        over = page.evaluate("""([w, mine]) => [...document.querySelectorAll(mine)]
            .filter(e => e.getBoundingClientRect().right > w + 0.5).map(e => e.className)""",
                             [width, MINE])
        assert over == [], f"{name} at {width} px: {over} wider than the screen"
        return
    wide = page.evaluate("document.documentElement.scrollWidth")
    assert wide <= width, f"{name} at {width} px is {wide} px wide"
