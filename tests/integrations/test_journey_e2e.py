"""An admin adds a webhook from the settings page, a flag change reaches the receiver, and the
delivery log sends it again — in a real browser, at desktop and phone widths."""

import os

import pytest
from playwright.sync_api import expect

from webapp.extensions import db
from webapp.services.actors import Actor
from webapp.services.governance import webhook_delivery
from webapp.services.platform import flags

pytestmark = pytest.mark.e2e


def shoot(page, name):
    folder = os.environ.get("SCREENSHOT_DIR")
    if folder:
        page.screenshot(path=os.path.join(folder, f"{name}.png"), full_page=True)


@pytest.mark.parametrize("width", [1366, 390])
def test_admin_adds_a_webhook_and_sends_a_delivery_again(page, sign_in, live_server, admin,
                                                         editor, project, make, receiver,
                                                         width):
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(admin.email)
    page.goto(f"{live_server}/projects/{project.id}/settings")
    shoot(page, f"settings-{width}")
    page.get_by_role("link", name="Manage webhooks and Slack").click()
    expect(page.get_by_role("heading", name="Webhooks and Slack", level=1)).to_be_visible()

    add = page.get_by_role("form", name="Add a webhook")
    add.get_by_label("URL").fill("ftp://example.com/hook")
    add.get_by_role("button", name="Add webhook").click()
    expect(page.get_by_text("Use an http:// or https:// URL.")).to_be_visible()
    add = page.get_by_role("form", name="Add a webhook")
    add.get_by_label("URL").fill(receiver.url)
    add.get_by_label("Secret").fill("s3cret")
    add.get_by_label("Stage completed").check()
    add.get_by_role("button", name="Add webhook").click()
    card = page.get_by_role("article", name=receiver.url)
    expect(card.locator(".badge")).to_have_text("Enabled")
    expect(card.get_by_label("Enabled")).to_be_checked()
    expect(card.get_by_label("Stage completed")).to_be_checked()
    page.get_by_label("Incoming webhook URL").fill(receiver.url)
    page.locator("#slack_settings").get_by_role("button", name="Save").click()
    expect(page.get_by_role("link", name="Slack delivery log")).to_be_visible()
    shoot(page, f"webhooks-{width}")

    db.session.rollback()  # the page wrote since this session last read
    flag = make.feature(project, "checkout")
    flags.set_state(flag, make.environments(project)[0].id, Actor.for_user(editor),
                    enabled=True)
    webhook_delivery.deliver_due()
    assert [r.json()["event_type"] for r in receiver.received] == ["FLAG_UPDATED"]

    card.get_by_role("link", name="Delivery log").click()
    row = page.get_by_role("row").filter(has_text="FLAG_UPDATED")
    expect(row.locator(".badge")).to_have_text("delivered")
    row.get_by_role("button", name="Send delivery").click()
    expect(page.get_by_text("will be sent again in a moment")).to_be_visible()
    shoot(page, f"deliveries-{width}")
