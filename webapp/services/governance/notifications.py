"""In-app notifications and the email outbox.

Rows are written in the same transaction as the change they announce (so nothing is announced
that did not happen) with idempotency keys (so a re-run never duplicates). Emails leave later
from the outbox, at least once: `deliver_outbox` claims a row, sends, then marks it sent.
"""

import logging
import smtplib
from email.message import EmailMessage

from flask import current_app
from sqlalchemy import insert, select, update

from webapp import database
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Notification, OutboxMessage, User
from webapp.orm import table_of

log = logging.getLogger(__name__)
MAX_SEND_ATTEMPTS = 10


def mail_configured() -> bool:
    return bool(current_app.config.get("MAIL_SERVER"))


def stage_completed(completions: list[dict], *, project_id: int) -> None:
    """Notify who added each flag and the pipeline's creator that a stage completed: an in-app
    notification each, and an email each through the outbox when mail is configured.

    `completions` are dicts of run_id, stage_id, feature_id, message and recipients (user ids,
    None skipped). Adds to the caller's transaction (set-based); writes no audit entry.
    """
    moment = now()
    rows, wanted = [], []
    for item in completions:
        link = f"/projects/{project_id}/flags/{item['feature_id']}"
        key = f"stage-completed:run:{item['run_id']}:stage:{item['stage_id']}"
        for uid in sorted({u for u in item["recipients"] if u is not None}):
            rows.append({"user_id": uid, "project_id": project_id, "kind": "stage_completed",
                         "message": item["message"], "link": link, "created_at": moment,
                         "idempotency_key": f"{key}:user:{uid}"})
            wanted.append((uid, item["message"], link, f"email:{key}:user:{uid}"))
    database.insert_rows(table_of(Notification), rows)
    if wanted and mail_configured():
        emails = dict(db.session.execute(
            select(User.id, User.email).where(User.id.in_({w[0] for w in wanted}))).all())
        db.session.execute(insert(table_of(OutboxMessage)), [
            {"kind": "email", "idempotency_key": key, "created_at": moment, "attempts": 0,
             "payload": {"to": emails[uid], "subject": f"Railyard: {message}",
                         "body": f"{message}\n\n{link}\n"}}
            for uid, message, link, key in wanted if uid in emails])


def announce(recipients: list[tuple[int, int | None]], kind: str, message: str, *, link: str,
             key: str) -> int:
    """An in-app notification for each (user id, project id or None), once per `key` (a second
    call with the same key adds nothing). Adds to the caller's transaction; returns how many
    were added."""
    if not recipients:
        return 0
    keys = [f"{key}:user:{uid}" for uid, _ in recipients]
    seen = set(db.session.scalars(select(Notification.idempotency_key).where(
        Notification.idempotency_key.in_(keys))))
    moment = now()
    rows = [{"user_id": uid, "project_id": pid, "kind": kind, "message": message, "link": link,
             "created_at": moment, "idempotency_key": k}
            for (uid, pid), k in zip(recipients, keys, strict=True) if k not in seen]
    if rows:
        db.session.execute(insert(table_of(Notification)), rows)
    return len(rows)


def unread(user_id: int, limit: int = 20) -> list[Notification]:
    return list(db.session.scalars(
        select(Notification).where(Notification.user_id == user_id, Notification.read_at.is_(None))
        .order_by(Notification.id.desc()).limit(limit)))


def deliver_outbox(limit: int = 100) -> int:
    """Send pending outbox emails; returns how many were handled (events are
    webhook_delivery's).

    Each message is claimed by a compare-and-set on `attempts` (several sweepers do not both
    send it), sent, then marked sent. A crash between send and mark sends it again: at least
    once. Without MAIL_SERVER a message is marked delivered in-app only.
    """
    pending = db.session.execute(
        select(OutboxMessage.id, OutboxMessage.attempts)
        .where(OutboxMessage.kind == "email", OutboxMessage.sent_at.is_(None),
               OutboxMessage.attempts < MAX_SEND_ATTEMPTS)
        .order_by(OutboxMessage.id).limit(limit)
    ).all()
    db.session.rollback()
    handled = 0
    for message_id, attempts in pending:
        claimed = database.changed(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.attempts == attempts,
                   OutboxMessage.sent_at.is_(None))
            .values(attempts=attempts + 1)
        )
        db.session.commit()
        if not claimed:
            continue
        message = db.session.get_one(OutboxMessage, message_id)
        error = None
        if mail_configured():
            try:
                _send(message.payload)
            except (OSError, smtplib.SMTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
        else:
            error = "Mail is not configured: delivered in-app only."
        if error and mail_configured():
            message.last_error = error
            log.warning("outbox message %s not sent: %s", message_id, error)
        else:
            message.sent_at = now()
            message.last_error = error
            handled += 1
        db.session.commit()
    return handled


def _send(payload: dict) -> None:
    config = current_app.config
    email = EmailMessage()
    email["From"] = config.get("MAIL_SENDER", "railyard@localhost")
    email["To"] = payload["to"]
    email["Subject"] = payload["subject"]
    email.set_content(payload["body"])
    with smtplib.SMTP(config["MAIL_SERVER"], int(config.get("MAIL_PORT", 25)), timeout=10) as smtp:
        smtp.send_message(email)
