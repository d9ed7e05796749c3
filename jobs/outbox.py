"""Delivering the outbox (emails) after commit, at least once."""

import logging

from flask import current_app
from rq.exceptions import DuplicateJobError

from webapp import redis_conn
from webapp.services import notifications

log = logging.getLogger(__name__)


def deliver() -> int:
    """Send pending outbox messages."""
    return notifications.deliver_outbox()


def ring() -> None:
    """Ask a worker to deliver the outbox soon (the sweeper delivers it anyway)."""
    if not current_app.config.get("MAIL_SERVER"):
        return
    try:
        redis_conn.queue().enqueue(deliver, job_id="outbox-deliver", unique=True, result_ttl=0)
    except DuplicateJobError:
        pass
    except Exception:  # noqa: BLE001 — the sweeper delivers the outbox too
        log.warning("could not enqueue outbox delivery", exc_info=True)
