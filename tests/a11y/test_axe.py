"""Accessibility: axe-core (pinned in package.json and package-lock.json, installed with `npm ci`
when node_modules is missing) runs in Chromium on every page of the tour the screenshot script
takes (tests/support/tour.py): no serious or critical violation on any page. The same walk, at
390 px, finds no page wider than the phone and no console error (a missing favicon was one).

One browser, one signed-in session per role, every page visited once at each width.
"""

from pathlib import Path

import pytest

from tests.support import tour
from tests.support.npm import npm_ci

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
SERIOUS = ("serious", "critical")
# The phone pass skips the pages every project shares with the typical one in the other states.
PHONE_SKIPS = ("large-", "empty-")
PHONE_AXE = ("typical-flags", "typical-pipelines", "typical-board", "typical-pipeline")


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe.min.js from tests/a11y/node_modules (`npm ci` from the lock file when absent)."""
    script = HERE / "node_modules" / "axe-core" / "axe.min.js"
    npm_ci(HERE, script)
    return script.read_text(encoding="utf-8")


def _sign_in(page, base: str, email: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(tour.PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def _walk(browser, base: str, pages: list[tour.Page], width: int, visit,
          axe_source: str) -> list[str]:
    """Visit each page at `width`, signed in as whom it is for; `visit(page, item)` returns
    what is wrong there. Console errors are collected as problems too."""
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_init_script(script=axe_source)  # through the browser's tools: no CSP applies
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems: list[str] = []
    current = {"item": pages[0]}

    def _console(message) -> None:
        if message.type != "error":
            return
        if current["item"].name.endswith("-refused") and "status of 403" in message.text:
            return  # the refusal page reports its own status
        problems.append(f"{width} px {current['item'].name}: console error: {message.text}")

    page.on("console", _console)
    signed_in_as = None
    for item in pages:
        current["item"] = item
        email = tour.VIEWER_EMAIL if item.viewer else tour.ADMIN_EMAIL
        if item.name == "login":
            context.clear_cookies()
            signed_in_as = None
        elif signed_in_as != email:
            _sign_in(page, base, email)
            signed_in_as = email
        page.goto(base + item.path)
        # Parts a page loads after itself (hx-trigger="load") replace their placeholder.
        page.wait_for_function(
            """() => !document.querySelector('[hx-trigger="load"], .htmx-request')""")
        problems.extend(f"{width} px {item.name}: {problem}" for problem in visit(page, item))
    context.close()
    return problems


def test_no_page_has_a_serious_accessibility_violation_or_is_wider_than_a_phone(
        app, live_server, browser, axe_source):
    pages = tour.build().pages

    def axe(page, item) -> list[str]:
        result = page.evaluate("""() => axe.run(document, {resultTypes: ['violations']})""")
        return [f"{v['impact']} {v['id']}: {v['help']} — "
                + "; ".join(node["target"][0] if isinstance(node["target"][0], str)
                            else str(node["target"][0]) for node in v["nodes"][:4])
                for v in result["violations"] if v["impact"] in SERIOUS]

    def fits(page, item) -> list[str]:
        # axe once more where the phone layout differs most: the menu, the tables as cards.
        found = axe(page, item) if item.name in PHONE_AXE else []
        wide = page.evaluate(tour.OVERFLOW_JS)
        if wide:
            found.append(f"{wide['scrollWidth']} px wide: {', '.join(wide['culprits'])}")
        return found

    problems = _walk(browser, live_server, pages, 1366, axe, axe_source)
    phone = [p for p in pages if not p.name.startswith(PHONE_SKIPS)]
    problems += _walk(browser, live_server, phone, 390, fits, axe_source)
    assert problems == [], "\n".join(problems)
