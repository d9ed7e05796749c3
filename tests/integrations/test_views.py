"""Settings → Webhooks and Slack, and the delivery log: admins only, CSRF, 422 beside the field,
private addresses refused (here with WEBHOOKS_ALLOW_PRIVATE off)."""

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import AuditEntry, Webhook, WebhookDelivery
from webapp.services.actors import SYSTEM, Actor
from webapp.services.governance import webhook_delivery, webhooks
from webapp.services.platform import flags

PUBLIC = "https://93.184.215.14/hook"  # a global address: accepted without resolving a name


def count(model) -> int:
    db.session.rollback()  # a fresh read: the requests committed in their own sessions
    return db.session.scalar(select(func.count()).select_from(model))


def page_url(project):
    return f"/projects/{project.id}/settings/webhooks"


@pytest.fixture
def strict(app):
    """The app as deployed: private addresses refused."""
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    return app


def test_settings_link_to_webhooks(client, login, admin, project):
    login(client, admin)
    page = client.get(f"/projects/{project.id}/settings").text
    assert f'href="{page_url(project)}"' in page


@pytest.mark.parametrize("who, status", [("viewer", 403), ("editor", 403), ("admin", 200)])
def test_webhooks_are_for_admins(client, login, request, project, who, status):
    login(client, request.getfixturevalue(who))
    assert client.get(page_url(project)).status_code == status
    assert client.post(page_url(project), data={"url": PUBLIC, "events": "FLAG_UPDATED"}
                       ).status_code in (status, 303)
    assert count(Webhook) == (1 if who == "admin" else 0)


def test_another_projects_webhook_is_404(client, login, make, admin, project, strict):
    other = make.project("Other")
    hook = webhooks.create_webhook(other, SYSTEM, url=PUBLIC, events=["FLAG_UPDATED"])
    login(client, admin)
    assert client.get(f"{page_url(project)}/{hook.id}/deliveries").status_code == 404
    assert client.post(f"{page_url(project)}/{hook.id}/delete").status_code == 404
    assert db.session.get(Webhook, hook.id) is not None


def test_create_edit_delete(hx, login, admin, project, strict):
    login(hx, admin)
    full = hx.get(page_url(project), headers={"HX-Request": ""})
    response = hx.post(page_url(project), data={
        "url": PUBLIC, "secret": "abc", "events": ["FLAG_UPDATED", "pipeline.flag_launched"],
        "enabled": "on"})
    assert response.status_code == 200
    assert "<html" not in response.text and "HX-Request" in response.headers["Vary"]
    assert 'id="webhook_list"' in response.text and PUBLIC in response.text
    db.session.rollback()
    hook = db.session.scalar(select(Webhook))
    assert (hook.secret, hook.events, hook.enabled) == (
        "abc", ["FLAG_UPDATED", "pipeline.flag_launched"], True)
    assert full.status_code == 200
    # Edit: an empty secret keeps the old one; unticking "enabled" disables it.
    response = hx.post(f"{page_url(project)}/{hook.id}", data={
        "url": PUBLIC, "secret": "", "events": ["change_request.opened"]})
    db.session.rollback()
    assert (hook.secret, hook.events, hook.enabled) == ("abc", ["change_request.opened"], False)
    assert "Disabled" in response.text
    events = db.session.scalars(select(AuditEntry.event_type).order_by(AuditEntry.id)).all()
    assert events[-2:] == ["WEBHOOK_CREATED", "WEBHOOK_UPDATED"]
    assert "abc" not in str(db.session.scalars(select(AuditEntry.after)).all())
    hx.post(f"{page_url(project)}/{hook.id}/delete")
    db.session.rollback()
    assert count(Webhook) == 0


def test_without_csrf_nothing_is_created(client, login, admin, project):
    login(client, admin)
    response = client.post(page_url(project), data={"url": PUBLIC, "events": "FLAG_UPDATED"},
                           csrf=False)
    assert response.status_code == 400
    assert count(Webhook) == 0


REFUSED = [
    ("ftp://93.184.215.14/x", "Use an http:// or https:// URL."),
    ("javascript:alert(1)", "Use an http:// or https:// URL."),
    ("", "Enter the receiver's URL."),
    ("https://", "The URL needs a host."),
    ("http://user:pw@93.184.215.14/", "Put no user name or password in the URL"),
    ("http://127.0.0.1:8080/hook", "a private, loopback or link-local address"),
    ("http://localhost/hook", "a private, loopback or link-local address"),
    ("http://10.1.2.3/hook", "a private, loopback or link-local address"),
    ("http://172.16.0.1/hook", "a private, loopback or link-local address"),
    ("http://192.168.1.10/hook", "a private, loopback or link-local address"),
    ("http://169.254.169.254/latest/meta-data", "a private, loopback or link-local address"),
    ("http://100.64.0.1/hook", "a private, loopback or link-local address"),
    ("http://0.0.0.0/hook", "a private, loopback or link-local address"),
    ("http://[::1]/hook", "a private, loopback or link-local address"),
    ("http://[fe80::1]/hook", "a private, loopback or link-local address"),
    ("http://[::ffff:127.0.0.1]/hook", "a private, loopback or link-local address"),
    ("http://2130706433/hook", "a private, loopback or link-local address"),  # 127.0.0.1
    ("http://0x7f.1/hook", "a private, loopback or link-local address"),
    ("http://host.invalid/hook", "does not resolve"),
    ("http://93.184.215.14:99999/", "Not a valid URL."),
]


@pytest.mark.parametrize("url, message", REFUSED)
def test_form_refuses_unsafe_urls(hx, login, admin, project, strict, url, message):
    login(hx, admin)
    response = hx.post(page_url(project), data={"url": url, "events": "FLAG_UPDATED"})
    assert response.status_code == 422
    assert message in response.text.replace("&#39;", "'")
    assert 'aria-invalid="true"' in response.text
    assert count(Webhook) == 0


@pytest.mark.parametrize("url, message", REFUSED[5:9])
def test_slack_form_refuses_unsafe_urls(hx, login, admin, project, strict, url, message):
    login(hx, admin)
    response = hx.post(f"{page_url(project)}/slack", data={"url": url})
    assert response.status_code == 422 and message in response.text
    assert 'id="slack_settings"' in response.text
    db.session.rollback()
    assert webhooks.slack_of(project.id) is None


def test_events_must_be_chosen_and_known(hx, login, admin, project, strict):
    login(hx, admin)
    response = hx.post(page_url(project), data={"url": PUBLIC})
    assert response.status_code == 422 and "Choose at least one event." in response.text
    response = hx.post(page_url(project), data={"url": PUBLIC, "events": "FLAG_EXPLODED"})
    assert response.status_code == 422 and "Unknown event: FLAG_EXPLODED." in response.text


def test_slack_set_and_removed(hx, login, admin, project, strict):
    login(hx, admin)
    response = hx.post(f"{page_url(project)}/slack", data={"url": PUBLIC})
    assert response.status_code == 200 and "Slack delivery log" in response.text
    db.session.rollback()
    assert webhooks.slack_of(project.id).url == PUBLIC
    hx.post(f"{page_url(project)}/slack", data={"url": ""})
    db.session.rollback()
    assert webhooks.slack_of(project.id) is None


def test_delivery_log_and_send_again(app, hx, client, login, admin, editor, project, make,
                                     receiver):
    hook = webhooks.create_webhook(project, SYSTEM, url=receiver.url, events=["FLAG_UPDATED"])
    receiver.answers.append(404)
    flag = make.feature(project, "logged")
    env = make.environments(project)[0]
    flags.set_state(flag, env.id, Actor.for_user(editor), enabled=True)
    webhook_delivery.deliver_due()
    delivery = db.session.scalar(select(WebhookDelivery))
    db.session.rollback()
    login(client, admin)
    page = client.get(f"{page_url(project)}/{hook.id}/deliveries").text
    assert "FLAG_UPDATED" in page and "failed" in page and "receiver is down" in page
    assert "Send delivery #" in page
    login(hx, admin)
    again = f"{page_url(project)}/{hook.id}/deliveries/{delivery.id}/send-again"
    response = hx.post(again)
    assert response.status_code == 200 and "will be sent again" in response.text
    assert 'id="delivery_list"' in response.text and "<html" not in response.text
    assert hx.post(again).status_code == 409  # already waiting
    db.session.rollback()
    webhook_delivery.deliver_due()
    db.session.rollback()
    assert db.session.get(WebhookDelivery, delivery.id).status == "delivered"
    assert len(receiver.received) == 2
    # Editors cannot send again; without CSRF nothing happens.
    login(client, editor)
    assert client.post(again).status_code == 403
    login(client, admin)
    assert client.post(again, csrf=False).status_code == 400
