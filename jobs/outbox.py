"""Delivering the outbox (emails, webhook and Slack events) after commit, at least once."""

import logging

from rq.exceptions import DuplicateJobError

from webapp import redis_conn
from webapp.services.governance import notifications, webhook_delivery

log = logging.getLogger(__name__)


def deliver() -> int:
    """Send pending outbox emails, expand new events and send the webhook deliveries due."""
    return notifications.deliver_outbox() + webhook_delivery.deliver_due()


def ring() -> None:
    """Ask a worker to deliver the outbox soon (the sweeper delivers it anyway, and re-drives
    retries that come due). Nothing to send, nothing rung."""
    if not (notifications.mail_configured() or webhook_delivery.events_waiting()):
        return
    try:
        redis_conn.queue().enqueue(deliver, job_id="outbox-deliver", unique=True, result_ttl=0)
    except DuplicateJobError:
        pass
    except Exception:  # noqa: BLE001 — the sweeper delivers the outbox too
        log.warning("could not enqueue outbox delivery", exc_info=True)
