"""Browser journeys: the app served from a thread (so the test's database applies) and Debian's
Chromium driven by Playwright through `executable_path`.

The browser is Debian's `chromium-headless-shell`: the same Chromium build (Blink, V8, the
same version) without the desktop browser's window machinery, and what Playwright itself runs
headless tests in. The full browser in its headless mode took 94 s of CPU for the 22 journeys
that the shell runs in 54. CHROMIUM_PATH=/usr/bin/chromium runs them in the full browser."""

import os
import threading

import pytest
from werkzeug.serving import make_server

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium-headless-shell")


@pytest.fixture
def live_server(app):
    """Serve the test's app on a free loopback port; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium-headless-shell")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"],
        )
        yield browser
        browser.close()


@pytest.fixture
def csp_violations():
    """What the browser refused under the Content-Security-Policy during the test (its console
    messages). Every browser test fails on one; a test that provokes one on purpose clears it."""
    return []


@pytest.fixture
def page(browser, csp_violations):
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.on("console", lambda message: csp_violations.append(
        f"{message.location.get('url')}: {message.text}")
        if "Content Security Policy" in message.text else None)
    yield page
    context.close()
    if csp_violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(csp_violations))


@pytest.fixture
def sign_in(page, live_server):
    """sign_in(email, password): sign in through the login form."""

    def _sign_in(email: str, password: str = "password123"):
        page.goto(f"{live_server}/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/login" not in url)
        return page

    return _sign_in


def htmx_settled(page) -> None:
    """Until htmx has no request in flight and has finished swapping and settling. Content it
    swaps in is visible at once but gets its hx-* behaviour at the end of the settle delay
    (20 ms): a change made to it before then sends nothing. A person is never that fast; a test
    that acts on an element right after a swap calls this first."""
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')")
