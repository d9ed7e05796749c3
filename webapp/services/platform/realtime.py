"""Realtime updates: every committed change to an environment is published on Redis, for the
stream server (webapp/streams.py) to tell the SDKs that keep a stream open.

`flag_changes.bump_revision` notes the environment on the session; after that session commits,
one PUBLISH per environment carries `{"environment_id", "updated_at"}` (epoch seconds, the
commit's time). Publishing is best effort: a change is committed whether or not Redis answers
(SDKs then see it on their next poll or reconnect), and a rolled-back change publishes nothing.
"""

import json
import logging

from flask import has_app_context
from sqlalchemy import event
from sqlalchemy.orm import Session

from webapp import redis_conn
from webapp.clock import now
from webapp.extensions import app_object

log = logging.getLogger(__name__)

CHANNEL = "railyard:environment-updated"
# The last published time per environment, sent to a stream when it opens (a change between
# the SDK's first fetch and its connection is not missed).
LAST_UPDATED = "railyard:environment-updated-at"
_PENDING = "railyard.realtime.environments"


def note_change(session: Session, environment_id: int) -> None:
    """Publish `environment_id` once `session` commits (called by bump_revision)."""
    session.info.setdefault(_PENDING, set()).add(environment_id)


def register() -> None:
    """Listen to every session's commits and rollbacks (idempotent; called by create_app)."""
    if not event.contains(Session, "after_commit", _after_commit):
        event.listen(Session, "after_commit", _after_commit)
        event.listen(Session, "after_rollback", _after_rollback)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def _after_commit(session: Session) -> None:
    environments = session.info.pop(_PENDING, None)
    if environments and has_app_context():
        publish(environments)


def publish(environment_ids: set[int]) -> None:
    """Tell the stream server these environments changed now. Never raises."""
    app = app_object()
    if not app.config.get("REDIS_URL") and "railyard.redis" not in app.extensions:
        return  # no Redis configured (a one-off command): nothing streams from this process
    moment = now().timestamp()
    try:
        pipe = redis_conn.connection(app).pipeline(transaction=False)
        for environment_id in sorted(environment_ids):
            pipe.hset(LAST_UPDATED, str(environment_id), repr(moment))
            pipe.publish(CHANNEL, json.dumps({"environment_id": environment_id,
                                              "updated_at": moment}))
        pipe.execute()
    except Exception as error:  # noqa: BLE001 — committed anyway; streams catch up on reconnect
        log.warning("realtime: could not publish environments %s: %s", sorted(environment_ids),
                    error)
