"""The append-only audit log. `record` adds an entry to the caller's unit of work.

Entries that are pipeline or change request events are also announced to the project's
webhooks (webhook_events.from_audit), in the same unit of work."""

from typing import Any

from webapp import database
from webapp.clock import now
from webapp.extensions import db
from webapp.models import AuditEntry
from webapp.orm import fit, table_of
from webapp.services.actors import Actor
from webapp.services.governance import webhook_events


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
        object_label=fit(AuditEntry.object_label, object_label),
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
    webhook_events.from_audit(actor, [{
        "event_type": event_type, "message": message, "project_id": project_id,
        "run_id": run_id, "change_request_id": change_request_id,
        "idempotency_key": idempotency_key}])
    return entry


def record_many(actor: Actor, entries: list[dict[str, Any]]) -> None:
    """Add many audit entries at once (the engine's batches): one INSERT for all of them.

    Each dict holds `record`'s keyword arguments plus `event_type` and `message`.
    """
    if not entries:
        return


    moment = now()
    rows = []
    for entry in entries:
        rows.append({
            "created_at": moment,
            "organisation_id": entry.get("organisation_id") or actor.organisation_id,
            "actor_type": actor.kind, "actor_user_id": actor.user_id,
            "actor_api_key_id": actor.api_key_id, "actor_label": actor.label,
            "event_type": entry["event_type"], "message": entry["message"],
            "project_id": entry.get("project_id"), "environment_id": entry.get("environment_id"),
            "object_type": entry["object_type"], "object_id": entry.get("object_id"),
            "object_label": fit(AuditEntry.object_label, entry.get("object_label") or ""),
            "before": entry.get("before"), "after": entry.get("after"),
            "pipeline_id": entry.get("pipeline_id"), "feature_id": entry.get("feature_id"),
            "run_id": entry.get("run_id"), "change_request_id": entry.get("change_request_id"),
            "idempotency_key": entry.get("idempotency_key"),
        })
    database.insert_rows(table_of(AuditEntry), rows)
    webhook_events.from_audit(actor, rows)
