"""Recurring work, declared in one place: the sweeper.

Every SWEEP_INTERVAL_SECONDS it re-drives runs whose bell should have rung but did not (Redis
flushed or restarted, a worker SIGKILLed mid-stage, a scheduled job lost or fired early) and
delivers the outbox: emails, new webhook events, and webhook retries that came due (their
backoff lives in the database, so a lost job loses nothing). It works from the database alone;
several copies may run at once.
"""

import logging
import signal
import threading

from flask import current_app

from jobs import transitions
from webapp.extensions import db
from webapp.services.governance import notifications, webhook_delivery
from webapp.services.platform import analytics
from webapp.services.runs import sweep

log = logging.getLogger(__name__)


def sweep_once() -> dict:
    """One pass: advance overdue runs inline, ring their follow-ups, deliver the outbox, add
    the buffered flag analytics to the database."""
    report = sweep.sweep(int(current_app.config.get("SWEEP_LIMIT", 5000)))
    transitions.ring(report.bells)
    delivered = notifications.deliver_outbox() + webhook_delivery.deliver_due()
    counted = analytics.flush()
    return {"moved": report.moved, "failed": report.failed, "delivered": delivered,
            "counted": counted}


def run_forever(stop: threading.Event | None = None) -> None:
    """Sweep every SWEEP_INTERVAL_SECONDS until SIGTERM/SIGINT (or `stop` is set)."""
    stop = stop or threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    interval = float(current_app.config.get("SWEEP_INTERVAL_SECONDS", 2))
    while not stop.is_set():
        try:
            result = sweep_once()
            if result["moved"] or result["failed"]:
                log.info("sweeper: %s", result)
        except Exception:  # noqa: BLE001 — keep sweeping; the next pass retries
            log.exception("sweep failed")
        db.session.remove()
        stop.wait(interval)
