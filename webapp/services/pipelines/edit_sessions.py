"""One audit entry per editing session of a draft pipeline, not one per builder autosave.

The builder saves every field as it changes; writing each save as its own
RELEASE_PIPELINE_UPDATED entry buried the log (64 entries in one session). Here an edit joins
the pipeline's latest entry when that entry is a builder session of the same actor that began
less than COALESCE_WINDOW ago, and nothing else about the pipeline was logged since (a publish,
another person's edit, a flag added: each starts a new entry). The session's diff keeps, per
field, the value before its first edit and after its last one.

Fields are paths: "name", "Stage 2 · environment_id", "Stage 2 · Action 1" (a whole action
added or removed). Stages are named by position, as the builder numbers them.

Safe under concurrency without a lock of its own: every draft edit first claims the pipeline
with a compare-and-set on its version (pipelines.claim_version), which holds the pipeline's row
(PostgreSQL) or the database's write lock (SQLite, BEGIN IMMEDIATE) until the edit commits, so
two edits of one pipeline never read and extend the same entry at once. The extension is itself
a compare-and-set on the entry's message, and falls back to a new entry.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from webapp.clock import now
from webapp.extensions import db
from webapp.models import AuditEntry, ReleasePipeline
from webapp.services.actors import Actor
from webapp.services.governance import audit
from webapp.services.governance.audit_reading import EDITS_JOIN, PATH

EVENT = "RELEASE_PIPELINE_UPDATED"
# Builder edits by one person on one pipeline within this time of the session's first edit
# join one entry: long enough for a round of autosaves, short enough that the log still says
# when things changed.
COALESCE_WINDOW = timedelta(minutes=5)


class _Absent:
    """A field that did not exist on one side (a stage added, an action removed)."""


ABSENT = _Absent()


def session_key(pipeline_id: int, version: int) -> str:
    """The idempotency key that marks an entry as a builder session (unique: versions only
    grow)."""
    return f"pipeline:{pipeline_id}:edits:v{version}"


def fields(path: str, before: Any, after: Any) -> dict[str, tuple[Any, Any]]:
    """One edit as {field path: (before, after)}: a whole object added or removed is one field
    (`path`); two objects, one field per key that changed."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys = list(before) + [k for k in after if k not in before]
        return {
            (f"{path}{PATH}{key}" if path else str(key)): (before.get(key, ABSENT),
                                                             after.get(key, ABSENT))
            for key in keys if before.get(key, ABSENT) != after.get(key, ABSENT)
        }
    return {path or "definition": (ABSENT if before is None else before,
                                   ABSENT if after is None else after)}


def merge(old_before: dict[str, Any], old_after: dict[str, Any],
          edit: dict[str, tuple[Any, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The session's diff with one more edit: a field seen before keeps its first "before" and
    takes the edit's "after"; a new field takes both. Fields back where they started drop out."""
    before, after = dict(old_before), dict(old_after)
    for path, (was, becomes) in edit.items():
        seen = path in before or path in after
        if not seen and was is not ABSENT:
            before[path] = was
        if becomes is ABSENT:
            after.pop(path, None)
        else:
            after[path] = becomes
        if (path in before) == (path in after) and before.get(path) == after.get(path):
            before.pop(path, None)
            after.pop(path, None)
    return before, after


def record_edit(actor: Actor, pipeline: ReleasePipeline, what: str, before: Any, after: Any,
                *, path: str = "") -> None:
    """Audit one builder edit of a draft (after its claim_version, in its unit of work): extend
    the actor's open session entry of this pipeline, or start one. `what` says the edit in
    words ("stage 2 (Beta) changed: name"); `path` names the stage or action it touched."""
    edit = fields(path, before, after)
    latest = _latest_entry(pipeline)
    if latest is not None and _joins(latest, actor, pipeline) and _extend(latest, pipeline,
                                                                          what, edit):
        return
    first_before, first_after = merge({}, {}, edit)
    audit.record(actor, EVENT, f"Release pipeline {pipeline.name}: {what}",
                 project_id=pipeline.project_id, object_type="release_pipeline",
                 object_id=pipeline.id, object_label=pipeline.name, pipeline_id=pipeline.id,
                 before=first_before, after=first_after,
                 idempotency_key=session_key(pipeline.id, pipeline.version or 0))


def _latest_entry(pipeline: ReleasePipeline) -> AuditEntry | None:
    """The pipeline's newest entry (the (project_id, pipeline_id, id) index: one seek)."""
    return db.session.scalar(
        select(AuditEntry)
        .where(AuditEntry.project_id == pipeline.project_id,
               AuditEntry.pipeline_id == pipeline.id)
        .order_by(AuditEntry.id.desc()).limit(1))


def _joins(entry: AuditEntry, actor: Actor, pipeline: ReleasePipeline) -> bool:
    return (entry.event_type == EVENT
            and (entry.idempotency_key or "").startswith(f"pipeline:{pipeline.id}:edits:")
            and (entry.actor_type, entry.actor_user_id, entry.actor_api_key_id,
                 entry.actor_label) == (actor.kind, actor.user_id, actor.api_key_id, actor.label)
            and now() - _aware(entry.created_at) < COALESCE_WINDOW)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive times (stored as UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _extend(entry: AuditEntry, pipeline: ReleasePipeline, what: str,
            edit: dict[str, tuple[Any, Any]]) -> bool:
    """Fold the edit into the entry; False when the entry changed meanwhile (write a new one)."""
    before, after = merge(entry.before or {}, entry.after or {}, edit)
    # The message names the pipeline as it is now (a rename in the session included).
    done = entry.message.removeprefix(f"Release pipeline {entry.object_label}: ")
    message = f"Release pipeline {pipeline.name}: {done}{EDITS_JOIN}{what}"
    moved: int = db.session.execute(  # type: ignore[attr-defined]  # a CursorResult
        update(AuditEntry)
        .where(AuditEntry.id == entry.id, AuditEntry.message == entry.message)
        .values(before=before, after=after, message=message, object_label=pipeline.name)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved == 1:
        db.session.expire(entry)
    return moved == 1
