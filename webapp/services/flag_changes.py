"""The one code path that changes a flag's states and segment overrides.

Manual toggles, pipeline stages, change requests and rollbacks all apply changes through
`apply_change`, so each bumps the environment's revision and writes the same audit entry shape.

A change is a plain dict (it is also stored in change requests and stage snapshots):
  {"kind": "state", "environment_id", "feature_id", "enabled"?, "value"?}
  {"kind": "override", "environment_id", "feature_id", "segment_id", "enabled"?, "value"?,
   "priority"?}
  {"kind": "remove_override", "environment_id", "feature_id", "segment_id"}
Keys left out ("enabled", "value") are left as they are.
"""

from typing import Any

from sqlalchemy import select, update

from webapp.extensions import db
from webapp.models import Environment, FeatureState, PipelineRun, SegmentOverride
from webapp.services import audit
from webapp.services.actors import Actor
from webapp.services.errors import Conflict


def bump_revision(environment_id: int) -> None:
    """Mark the environment's SDK documents stale (same transaction as the change)."""
    db.session.execute(
        update(Environment)
        .where(Environment.id == environment_id)
        .values(revision=Environment.revision + 1)
    )


def _state_row(feature_id: int, environment_id: int) -> FeatureState | None:
    return db.session.scalar(
        select(FeatureState).where(
            FeatureState.feature_id == feature_id, FeatureState.environment_id == environment_id
        )
    )


def _override_row(feature_id: int, environment_id: int, segment_id: int) -> SegmentOverride | None:
    return db.session.scalar(
        select(SegmentOverride).where(
            SegmentOverride.feature_id == feature_id,
            SegmentOverride.environment_id == environment_id,
            SegmentOverride.segment_id == segment_id,
        )
    )


def read_target(change: dict[str, Any]) -> dict[str, Any] | None:
    """What the change's target looks like now: {"enabled", "value"[, "priority"]}, or None
    when it is an override that does not exist."""
    if change["kind"] == "state":
        row = _state_row(change["feature_id"], change["environment_id"])
        return None if row is None else {"enabled": row.enabled, "value": row.value}
    row = _override_row(change["feature_id"], change["environment_id"], change["segment_id"])
    if row is None:
        return None
    return {"enabled": row.enabled, "value": row.value, "priority": row.priority}


def _next_priority(feature_id: int, environment_id: int) -> int:
    highest = db.session.scalar(
        select(db.func.max(SegmentOverride.priority)).where(
            SegmentOverride.feature_id == feature_id,
            SegmentOverride.environment_id == environment_id,
        )
    )
    return 0 if highest is None else highest + 1


def write_target(change: dict[str, Any]) -> tuple[dict | None, dict | None]:
    """Apply the change to the rows; return (before, after) snapshots. No audit, no revision."""
    before = read_target(change)
    kind = change["kind"]
    feature_id, environment_id = change["feature_id"], change["environment_id"]
    if kind == "state":
        row = _state_row(feature_id, environment_id)
        if row is None:
            row = FeatureState(feature_id=feature_id, environment_id=environment_id)
            db.session.add(row)
        if "enabled" in change:
            row.enabled = bool(change["enabled"])
        if "value" in change:
            row.value = change["value"]
    elif kind == "override":
        row = _override_row(feature_id, environment_id, change["segment_id"])
        if row is None:
            priority = change.get("priority")
            row = SegmentOverride(
                feature_id=feature_id,
                environment_id=environment_id,
                segment_id=change["segment_id"],
                priority=_next_priority(feature_id, environment_id) if priority is None else priority,
                enabled=False,
                value=None,
            )
            db.session.add(row)
        elif change.get("priority") is not None:
            row.priority = change["priority"]
        if "enabled" in change:
            row.enabled = bool(change["enabled"])
        if "value" in change:
            row.value = change["value"]
    elif kind == "remove_override":
        row = _override_row(feature_id, environment_id, change["segment_id"])
        if row is not None:
            db.session.delete(row)
    else:
        raise ValueError(f"unknown change kind {kind!r}")
    db.session.flush()
    return before, read_target(change)


def apply_change(
    change: dict[str, Any],
    actor: Actor,
    *,
    project_id: int,
    event_type: str,
    message: str,
    object_label: str = "",
    idempotency_key: str | None = None,
    pipeline_id: int | None = None,
    run_id: int | None = None,
    change_request_id: int | None = None,
) -> tuple[dict | None, dict | None]:
    """Apply one change in the caller's transaction: rows, environment revision, audit entry."""
    before, after = write_target(change)
    bump_revision(change["environment_id"])
    audit.record(
        actor,
        event_type,
        message,
        project_id=project_id,
        environment_id=change["environment_id"],
        object_type="feature_state" if change["kind"] == "state" else "segment_override",
        object_id=change["feature_id"],
        object_label=object_label,
        before=before,
        after=after,
        feature_id=change["feature_id"],
        pipeline_id=pipeline_id,
        run_id=run_id,
        change_request_id=change_request_id,
        idempotency_key=idempotency_key,
    )
    return before, after


def active_run(feature_id: int) -> PipelineRun | None:
    return db.session.scalar(
        select(PipelineRun).where(
            PipelineRun.feature_id == feature_id, PipelineRun.ended_at.is_(None)
        )
    )


def refuse_if_in_flight(feature_id: int) -> None:
    """Manual changes to states, values and overrides are refused while a pipeline owns the flag."""
    run = active_run(feature_id)
    if run is not None:
        raise Conflict(
            f"This flag is in the release pipeline “{run.pipeline.name}”: the pipeline owns its "
            "states until the flag is launched or removed."
        )
