"""Accessibility: axe-core (pinned in package.json and package-lock.json, installed with `npm ci`
when node_modules is missing) runs in Chromium on every page of the tour the screenshot script
takes (tests/support/tour.py, walked by tests/support/tour_walk.py): no serious or critical
violation on any page. The same walk, at 390 px, finds no page wider than the phone and no
console error (a missing favicon was one).

One browser, one signed-in session per role, every page visited once at each width.
"""

from pathlib import Path

import pytest

from tests.support import tour, tour_walk
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


def _walk(browser, base: str, pages: list[tour.Page], width: int, visit,
          axe_source: str) -> list[str]:
    context = browser.new_context(viewport={"width": width, "height": 900})
    context.add_init_script(script=axe_source)  # through the browser's tools: no CSP applies
    context.set_default_timeout(15_000)
    try:
        return tour_walk.walk(context, base, pages, visit)
    finally:
        context.close()


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
        return found + tour_walk.too_wide(page)

    problems = _walk(browser, live_server, pages, 1366, axe, axe_source)
    phone = [p for p in pages if not p.name.startswith(PHONE_SKIPS)]
    problems += _walk(browser, live_server, phone, 390, fits, axe_source)
    assert problems == [], "\n".join(problems)
