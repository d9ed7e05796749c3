"""The append-only audit log. `record` adds an entry to the caller's unit of work."""

from typing import Any

from webapp.extensions import db
from webapp.models import AuditEntry
from webapp.services.actors import Actor


def record(
    actor: Actor,
    event_type: str,
    message: str,
    *,
    project_id: int | None,
    object_type: str,
    object_id: int | None = None,
    object_label: str = "",
    environment_id: int | None = None,
    before: Any = None,
    after: Any = None,
    pipeline_id: int | None = None,
    feature_id: int | None = None,
    run_id: int | None = None,
    change_request_id: int | None = None,
    idempotency_key: str | None = None,
    organisation_id: int | None = None,
) -> AuditEntry:
    """Add an audit entry to the current session (committed with the change it describes)."""
    entry = AuditEntry(
        organisation_id=organisation_id or actor.organisation_id,
        project_id=project_id,
        environment_id=environment_id,
        actor_type=actor.kind,
        actor_user_id=actor.user_id,
        actor_api_key_id=actor.api_key_id,
        actor_label=actor.label,
        event_type=event_type,
        object_type=object_type,
        object_id=object_id,
        object_label=object_label[:320],
        message=message,
        before=before,
        after=after,
        pipeline_id=pipeline_id,
        feature_id=feature_id,
        run_id=run_id,
        change_request_id=change_request_id,
        idempotency_key=idempotency_key,
    )
    db.session.add(entry)
    return entry
