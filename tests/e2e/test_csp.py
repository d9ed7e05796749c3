"""The Content-Security-Policy holds in a real browser: every page of the dashboard loads and
works without a refused script or style, and an injected inline script does not run."""

import pytest
from playwright.sync_api import expect

from webapp.services.actors import Actor
from webapp.services.pipelines import builder

pytestmark = pytest.mark.e2e


def test_every_page_loads_without_a_csp_violation(page, live_server, sign_in, make, project,
                                                  csp_violations):
    admin = make.user(project=project, role="admin", site_admin=True, email="root@example.com")
    flag = make.feature(project, "new_checkout")
    segment = make.segment(project, "Beta")
    pipeline = builder.create_pipeline(project, "Release", Actor.for_user(admin))
    sign_in(admin.email)
    base = f"{live_server}/projects/{project.id}"
    for path in ["/", "/profile", "/admin/users", "/api/v1/docs/"]:
        page.goto(f"{live_server}{path}")
        expect(page.locator("main")).to_be_visible()
    for path in ["", "/flags", f"/flags/{flag.id}", "/segments", f"/segments/{segment.id}",
                 "/segments/new", "/pipelines", f"/pipelines/{pipeline.id}", "/board",
                 "/audit", "/change-requests", "/settings"]:
        page.goto(base + path)
        expect(page.locator("main")).to_be_visible()
    # htmx runs under the policy (loaded from /static, configured by its meta tag).
    page.goto(f"{base}/flags")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("typeof window.htmx") == "object"
    assert page.evaluate("htmx.config.allowEval") is False
    assert csp_violations == []


def test_an_injected_inline_script_is_refused(page, live_server, csp_violations):
    page.goto(f"{live_server}/login")
    page.evaluate("""() => {
        const script = document.createElement('script');
        script.textContent = 'window.__injected = true';
        document.body.append(script);
    }""")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate("window.__injected === undefined")
    assert any("script-src 'self'" in message for message in csp_violations), csp_violations
    csp_violations.clear()  # provoked on purpose
