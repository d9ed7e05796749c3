"""Delivering events to receivers: expand each outbox event into one delivery per receiver,
then POST due deliveries, at least once, retried with exponential backoff.

- Expansion is one transaction per event: mark the outbox row sent and insert its deliveries
  (unique idempotency key per (event, receiver)), so an event is expanded once however many
  workers and sweepers race for it.
- A delivery is claimed by a compare-and-set on `attempts` that also pushes `next_attempt_at`
  past the request timeout (the lease) and records the attempt as "sending"; a worker killed
  mid-request leaves the lease to expire and the attempt to be marked interrupted. Receivers
  deduplicate on the `X-Railyard-Delivery` header, which stays the same on every retry.
- 2xx delivers; network errors, 429 and 5xx retry after BACKOFF_BASE * 2^n seconds (at most
  BACKOFF_CAP) until the retry span (WEBHOOK_RETRY_SECONDS) has passed; then the delivery
  gives up and the receiver is disabled, its project's admins notified. Other answers fail the
  delivery at once (the receiver refused it; "send again" is there for a fixed receiver).
"""

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from webapp import database
from webapp.clock import now
from webapp.extensions import db
from webapp.models import (
    Membership,
    Notification,
    OutboxMessage,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
)
from webapp.orm import fit, table_of
from webapp.services.governance import webhooks
from webapp.services.governance.webhook_events import SLACK_EVENTS, group_of

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Flagsmith-Signature"  # Flagsmith's name, so its receivers work unchanged
TIMEOUT_SECONDS = 10  # one request; Flagsmith's own webhooks wait as long
# A claimed delivery is left alone this long; a killed worker's claim expires after it.
LEASE_MARGIN_SECONDS = 5
BACKOFF_BASE_SECONDS = 30
BACKOFF_CAP_SECONDS = 3600
RETRY_SECONDS = 6 * 3600  # how long a failing receiver is retried before it is disabled
EXCERPT = 500  # characters of a response kept in the log
BATCH = 100
# Deliveries claimed at once: a worker killed mid-batch leaves at most these to its lease.
CLAIM = 10


def sign(body: bytes, secret: str) -> str:
    """Flagsmith's signature: the hex HMAC-SHA256 of the raw body, keyed by the secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> timedelta:
    """Wait before try number `attempts + 1`: 30 s, 60 s, 2 min, ... at most an hour."""
    return timedelta(seconds=min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempts - 1)))


def deliver_due(limit: int = BATCH) -> int:
    """Expand new events, then send the deliveries that are due; returns how many were sent
    (successfully or not)."""
    expand(limit)
    return send_due(limit)


def events_waiting() -> bool:
    """Whether some outbox event still waits to be expanded (one indexed read)."""
    return db.session.scalar(
        select(OutboxMessage.id).where(OutboxMessage.sent_at.is_(None),
                                       OutboxMessage.kind == "event").limit(1)) is not None


# --- Expansion -------------------------------------------------------------------------------


def expand(limit: int = BATCH) -> int:
    """Turn pending outbox events into one delivery per enabled receiver that wants them, in
    one transaction: each event is claimed by a compare-and-set on `sent_at`, so two expanders
    never both expand it (and the unique key per (event, receiver) would refuse it anyway)."""
    pending = list(db.session.scalars(
        select(OutboxMessage.id).where(OutboxMessage.kind == "event",
                                       OutboxMessage.sent_at.is_(None))
        .order_by(OutboxMessage.id).limit(limit)))
    db.session.rollback()
    if not pending:
        return 0
    moment = now()
    rows, expanded = [], 0
    for message_id in pending:
        claimed = database.changed(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.sent_at.is_(None))
            .values(sent_at=moment, attempts=OutboxMessage.attempts + 1)
            .execution_options(synchronize_session=False))
        if claimed:
            rows += _deliveries(db.session.get_one(OutboxMessage, message_id), moment)
            expanded += 1
    try:
        if rows:
            db.session.execute(insert(table_of(WebhookDelivery)), rows)
        db.session.commit()
    except IntegrityError:  # expanded by someone else meanwhile: theirs stand
        db.session.rollback()
        return 0
    return expanded


def _deliveries(message: OutboxMessage, moment) -> list[dict[str, Any]]:
    payload = message.payload
    event_type = payload["event_type"]
    rows = []
    for hook in db.session.execute(
            select(Webhook.id, Webhook.kind, Webhook.events)
            .where(Webhook.project_id == payload["project_id"], Webhook.enabled)
            .order_by(Webhook.id)):
        if hook.kind == "slack":
            if event_type not in SLACK_EVENTS or not payload.get("slack"):
                continue
            body = json.dumps({"text": payload["slack"]})
        elif group_of(event_type) in (hook.events or ()):
            body = payload["body"]
        else:
            continue
        rows.append({"webhook_id": hook.id, "outbox_message_id": message.id,
                     "idempotency_key": fit(WebhookDelivery.idempotency_key,
                                            f"{message.idempotency_key}:receiver:{hook.id}"),
                     "event_type": event_type, "body": body, "status": "pending", "attempts": 0,
                     "next_attempt_at": moment, "created_at": moment})
    return rows


# --- Sending ---------------------------------------------------------------------------------


def send_due(limit: int = BATCH) -> int:
    """Send up to `limit` due deliveries of enabled receivers, CLAIM at a time."""
    sent = 0
    while sent < limit:
        batch = _send_batch(min(CLAIM, limit - sent))
        if not batch:
            break
        sent += batch
    return sent


def _send_batch(limit: int) -> int:
    """Claim due deliveries (one commit), then send each and record its attempt (a commit
    each, so a killed worker leaves at most the one in hand unrecorded)."""
    moment = now()
    due = db.session.execute(
        select(WebhookDelivery.id, WebhookDelivery.attempts)
        .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= moment,
               Webhook.enabled)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)).all()
    db.session.rollback()
    if not due:
        return 0
    lease = moment + timedelta(seconds=_timeout() + LEASE_MARGIN_SECONDS)
    claimed: list[tuple[int, int]] = []
    for delivery_id, attempts in due:
        moved = database.changed(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.attempts == attempts,
                   WebhookDelivery.status == "pending")
            .values(attempts=attempts + 1, next_attempt_at=lease, last_attempt_at=moment)
            .execution_options(synchronize_session=False))
        if not moved:
            continue
        # An attempt still "sending" was cut short (its worker died): say so in the log.
        db.session.execute(
            update(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery_id, WebhookAttempt.outcome == "sending")
            .values(outcome="interrupted", finished_at=moment,
                    error="The worker stopped before the answer was recorded; sent again.")
            .execution_options(synchronize_session=False))
        attempt = WebhookAttempt(delivery_id=delivery_id, started_at=moment, outcome="sending")
        db.session.add(attempt)
        db.session.flush()
        claimed.append((delivery_id, attempt.id))
    db.session.commit()
    for delivery_id, attempt_id in claimed:
        _attempt(delivery_id, attempt_id)
    return len(claimed)


def _attempt(delivery_id: int, attempt_id: int) -> None:
    delivery = db.session.get_one(WebhookDelivery, delivery_id)
    hook = db.session.get_one(Webhook, delivery.webhook_id)
    code, excerpt, error = _post(hook, delivery)
    moment = now()
    db.session.execute(
        update(WebhookAttempt).where(WebhookAttempt.id == attempt_id)
        .values(finished_at=moment, status_code=code, response_excerpt=excerpt, error=error,
                outcome=_outcome(code))
        .execution_options(synchronize_session=False))
    if delivery.first_attempt_at is None:
        delivery.first_attempt_at = delivery.last_attempt_at or moment
    outcome = _outcome(code)
    if outcome == "delivered":
        delivery.status, delivery.next_attempt_at = "delivered", None
    elif outcome == "refused":
        delivery.status, delivery.next_attempt_at = "failed", None
    elif moment - delivery.first_attempt_at + backoff(delivery.attempts) > timedelta(
            seconds=_retry_seconds()):
        delivery.status, delivery.next_attempt_at = "gave_up", None
        _disable(hook, delivery, error or f"HTTP {code}")
    else:
        delivery.next_attempt_at = moment + backoff(delivery.attempts)
    db.session.commit()


def _outcome(code: int | None) -> str:
    if code is not None and 200 <= code < 300:
        return "delivered"
    if code is None or code == 429 or code >= 500:
        return "retry"
    return "refused"


def _post(hook: Webhook, delivery: WebhookDelivery) -> tuple[int | None, str, str]:
    """POST the delivery: (status code or None, response excerpt, error)."""
    parts = urlsplit(hook.url)
    problem = webhooks.address_problem(
        parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    if problem:
        return None, "", f"Not sent: {problem}"
    body = delivery.body.encode()
    headers = {"Content-Type": "application/json", "User-Agent": "Railyard-Webhooks/1",
               "X-Railyard-Event": delivery.event_type,
               "X-Railyard-Delivery": delivery.idempotency_key}
    if hook.kind == "webhook":
        headers[SIGNATURE_HEADER] = sign(body, hook.secret)
    request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")
    started = time.monotonic()
    try:
        with _OPENER.open(request, timeout=_timeout()) as response:
            return response.status, _excerpt(response.read(EXCERPT * 4)), ""
    except urllib.error.HTTPError as error:
        with error:
            return error.code, _excerpt(error.read(EXCERPT * 4)), f"HTTP {error.code}"
    except (OSError, ValueError) as error:  # refused, reset, timed out, bad name
        waited = time.monotonic() - started
        return None, "", f"{type(error).__name__}: {error} (after {waited:.1f} s)"


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect could lead to an address the URL check refused: answer with the 3xx itself.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _excerpt(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")[:EXCERPT]


def _timeout() -> float:
    return float(current_app.config.get("WEBHOOK_TIMEOUT_SECONDS", TIMEOUT_SECONDS))


def _retry_seconds() -> float:
    return float(current_app.config.get("WEBHOOK_RETRY_SECONDS", RETRY_SECONDS))


def _disable(hook: Webhook, delivery: WebhookDelivery, error: str) -> None:
    """The receiver failed for the whole retry span: switch it off and tell the admins."""
    if not hook.enabled:
        return
    label = "Slack" if hook.kind == "slack" else hook.url
    reason = (f"Disabled by Railyard on {now():%Y-%m-%d %H:%M} UTC: delivery #{delivery.id} "
              f"failed for {_retry_seconds() / 3600:g} h ({error[:200]}).")
    hook.enabled, hook.disabled_reason = False, reason
    admins = db.session.scalars(select(Membership.user_id).where(
        Membership.project_id == hook.project_id, Membership.role == "admin")).all()
    if admins:
        link = f"/projects/{hook.project_id}/settings/webhooks/{hook.id}/deliveries"
        db.session.execute(insert(table_of(Notification)), [
            {"user_id": uid, "project_id": hook.project_id, "kind": "webhook_disabled",
             "message": f"Webhook {label} was disabled: it kept failing. {reason}",
             "link": link, "created_at": now(),
             "idempotency_key": f"webhook-disabled:{hook.id}:delivery:{delivery.id}:user:{uid}"}
            for uid in admins])
    log.warning("webhook %s disabled: %s", hook.id, reason)

