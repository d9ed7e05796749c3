"""A project's receivers of events: webhooks (signed JSON for the events each wants) and one
Slack incoming webhook; their delivery logs and "send again". Project admins manage them.

A receiver URL must be http(s) and its host must resolve to public addresses only: private,
loopback, link-local and other non-global addresses are refused (a webhook is a request the
server makes on a user's behalf) unless WEBHOOKS_ALLOW_PRIVATE is set (tests, closed networks).
Delivery checks the address again, since a name can be re-pointed after it was saved.
"""

import ipaddress
import secrets
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select, update

from webapp import database
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Project, Webhook, WebhookAttempt, WebhookDelivery
from webapp.orm import table_of
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.governance import audit
from webapp.services.governance.webhook_events import EVENTS

MAX_URL = 2000
MAX_SECRET = 255
LOG_PAGE_SIZE = 50


# --- URL safety ------------------------------------------------------------------------------


def url_problem(url: str) -> str | None:
    """Why `url` may not receive events, or None when it may."""
    if not url:
        return "Enter the receiver's URL."
    if len(url) > MAX_URL:
        return f"At most {MAX_URL} characters."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "Not a valid URL."
    if parts.scheme not in ("http", "https"):
        return "Use an http:// or https:// URL."
    if not parts.hostname:
        return "The URL needs a host."
    if parts.username or parts.password:
        return "Put no user name or password in the URL; use the secret to authenticate."
    return address_problem(parts.hostname, port or (443 if parts.scheme == "https" else 80))


def address_problem(host: str, port: int) -> str | None:
    """Why `host` may not be called (it resolves to a non-public address), or None."""
    if current_app.config.get("WEBHOOKS_ALLOW_PRIVATE"):
        return None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return f"The host {host} does not resolve."
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        if not address.is_global or address.is_multicast:
            return (f"{host} resolves to {address}, a private, loopback or link-local address: "
                    "Railyard only calls public addresses.")
    return None


# --- Receivers -------------------------------------------------------------------------------


def list_webhooks(project_id: int) -> list[Webhook]:
    """The project's webhooks (not its Slack receiver), oldest first."""
    return list(db.session.scalars(
        select(Webhook).where(Webhook.project_id == project_id, Webhook.kind == "webhook")
        .order_by(Webhook.id)))


def slack_of(project_id: int) -> Webhook | None:
    return db.session.scalar(
        select(Webhook).where(Webhook.project_id == project_id, Webhook.kind == "slack"))


def get_webhook(project_id: int, webhook_id: int) -> Webhook:
    """The project's receiver (webhook or Slack); NotFound for another project's."""
    hook = db.session.get(Webhook, webhook_id)
    if hook is None or hook.project_id != project_id:
        raise NotFound("Webhook not found.")
    return hook


def _checked(url: str | None, secret: str | None, events: list[str] | None) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    if url is not None:
        url = url.strip()
        if problem := url_problem(url):
            errors["url"] = [problem]
        values["url"] = url
    if secret is not None:
        if len(secret) > MAX_SECRET:
            errors["secret"] = [f"At most {MAX_SECRET} characters."]
        values["secret"] = secret
    if events is not None:
        unknown = [e for e in events if e not in EVENTS]
        if unknown:
            errors["events"] = [f"Unknown event: {', '.join(map(str, unknown))}."]
        elif not events:
            errors["events"] = ["Choose at least one event."]
        values["events"] = [e for e in EVENTS if e in events]
    if errors:
        raise Invalid("Check the webhook's fields.", errors)
    return values


def create_webhook(project: Project, actor: Actor, *, url: str, events: list[str],
                   secret: str = "", enabled: bool = True) -> Webhook:
    """Add a webhook. Refuses a URL that is not http(s) or reaches a non-public address, an
    empty or unknown event list, an over-long secret (Invalid). Without a secret one is made
    (every request is signed). Audited as WEBHOOK_CREATED (without the secret)."""
    values = _checked(url, secret, events)
    hook = Webhook(project_id=project.id, kind="webhook", url=values["url"],
                   secret=values["secret"] or secrets.token_urlsafe(24), events=values["events"],
                   enabled=bool(enabled))
    db.session.add(hook)
    db.session.flush()
    audit.record(actor, "WEBHOOK_CREATED", f"Webhook {hook.url} added", project_id=project.id,
                 object_type="webhook", object_id=hook.id, object_label=hook.url,
                 after={"url": hook.url, "events": hook.events, "enabled": hook.enabled})
    db.session.commit()
    return hook


def update_webhook(hook: Webhook, actor: Actor, *, url: str | None = None,
                   events: list[str] | None = None, secret: str | None = None,
                   enabled: bool | None = None) -> Webhook:
    """Change a webhook's URL, events, secret (an empty one keeps the old) or enabled flag.
    Enabling clears why Railyard disabled it; pending deliveries then go out. Refuses as
    `create_webhook` does. Audited as WEBHOOK_UPDATED (without the secret)."""
    values = _checked(url, secret or None, events)
    before = {"url": hook.url, "events": hook.events, "enabled": hook.enabled}
    for key, value in values.items():
        setattr(hook, key, value)
    if enabled is not None:
        hook.enabled = bool(enabled)
        if hook.enabled:
            hook.disabled_reason = ""
    audit.record(actor, "WEBHOOK_UPDATED", f"Webhook {hook.url} updated",
                 project_id=hook.project_id, object_type="webhook", object_id=hook.id,
                 object_label=hook.url, before=before,
                 after={"url": hook.url, "events": hook.events, "enabled": hook.enabled,
                        "secret_changed": "secret" in values})
    db.session.commit()
    return hook


def delete_webhook(hook: Webhook, actor: Actor) -> None:
    """Delete a receiver with its delivery log. Audited as WEBHOOK_DELETED."""
    audit.record(actor, "WEBHOOK_DELETED", f"{'Slack' if hook.kind == 'slack' else 'Webhook'} "
                 f"{hook.url} removed", project_id=hook.project_id, object_type="webhook",
                 object_id=hook.id, object_label=hook.url, before={"url": hook.url})
    db.session.execute(
        table_of(WebhookAttempt).delete().where(WebhookAttempt.delivery_id.in_(
            select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == hook.id))))
    db.session.execute(table_of(WebhookDelivery).delete().where(
        WebhookDelivery.webhook_id == hook.id))
    db.session.delete(hook)
    db.session.commit()


def set_slack(project: Project, url: str, actor: Actor) -> Webhook | None:
    """Set (or with an empty URL, remove) the project's Slack incoming webhook; setting it
    enables it. Refuses URLs as `create_webhook` does. Audited as SLACK_WEBHOOK_SET."""
    url = (url or "").strip()
    hook = slack_of(project.id)
    if not url:
        if hook is not None:
            delete_webhook(hook, actor)
        return None
    _checked(url, None, None)
    if hook is None:
        hook = Webhook(project_id=project.id, kind="slack", url=url, secret="", events=[])
        db.session.add(hook)
    hook.url, hook.enabled, hook.disabled_reason = url, True, ""
    db.session.flush()
    audit.record(actor, "SLACK_WEBHOOK_SET", "Slack incoming webhook set",
                 project_id=project.id, object_type="webhook", object_id=hook.id,
                 object_label="Slack")
    db.session.commit()
    return hook


# --- Delivery log ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogPage:
    deliveries: list[WebhookDelivery]
    attempts: dict[int, list[WebhookAttempt]]
    page: int
    pages: int
    total: int


def delivery_log(hook: Webhook, page: int = 1) -> LogPage:
    """The receiver's deliveries, newest first, with every attempt of each (two queries)."""
    total = db.session.scalar(select(func.count()).select_from(WebhookDelivery)
                              .where(WebhookDelivery.webhook_id == hook.id)) or 0
    pages = max(1, -(-total // LOG_PAGE_SIZE))
    page = min(max(1, page), pages)
    deliveries = list(db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.webhook_id == hook.id)
        .order_by(WebhookDelivery.id.desc())
        .limit(LOG_PAGE_SIZE).offset((page - 1) * LOG_PAGE_SIZE)))
    attempts: dict[int, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in db.session.scalars(
                select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(list(attempts)))
                .order_by(WebhookAttempt.id)):
            attempts[attempt.delivery_id].append(attempt)
    return LogPage(deliveries, attempts, page, pages, total)


def send_again(hook: Webhook, delivery_id: int, actor: Actor) -> WebhookDelivery:
    """Queue a delivery to be sent once more now, with a fresh retry span. Refuses another
    receiver's delivery (NotFound), a disabled receiver and one already waiting to be sent
    (Conflict). Audited as WEBHOOK_DELIVERY_RESENT."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.webhook_id != hook.id:
        raise NotFound("Delivery not found.")
    if not hook.enabled:
        raise Conflict("This receiver is disabled; enable it first.")
    moment = now()
    moved = database.changed(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, WebhookDelivery.status != "pending")
        .values(status="pending", next_attempt_at=moment, first_attempt_at=None)
        .execution_options(synchronize_session=False))
    if not moved:
        db.session.rollback()
        raise Conflict("This delivery is already waiting to be sent.")
    audit.record(actor, "WEBHOOK_DELIVERY_RESENT",
                 f"Delivery #{delivery.id} ({delivery.event_type}) to {hook.url} sent again",
                 project_id=hook.project_id, object_type="webhook", object_id=hook.id,
                 object_label=hook.url)
    db.session.commit()
    db.session.refresh(delivery)
    return delivery
