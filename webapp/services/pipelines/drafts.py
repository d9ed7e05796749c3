"""A draft edit's unit of work: open the draft at the version the edit was made against, claim it
with a compare-and-set, snapshot stages for the audit log and write the audit entry.
"""

from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import selectinload

from webapp.clock import now
from webapp.database import begin_immediate, compare_and_set
from webapp.extensions import db
from webapp.models import (
    PipelineStage,
    ReleasePipeline,
    StageAction,
)
from webapp.parsing import ascii_int
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, NotFound
from webapp.services.governance import audit
from webapp.services.pipelines import check_inputs, edit_sessions
from webapp.services.pipelines.catalog import in_flight_count

PUBLISHED_MESSAGE = (
    "This pipeline is published and cannot be changed. Clone it to make a new draft."
)
STALE_MESSAGE = (
    "Someone else changed this pipeline since you opened it; nothing was saved. "
    "Here is its current state: check it and make your change again."
)
IN_FLIGHT_MESSAGE = "Flags are in flight in this pipeline; remove or finish them first."


def _lock(pipeline: ReleasePipeline, **values: Any) -> ReleasePipeline | None:
    """Write `values` to the live pipeline (unpublish: only if published) and keep the row locked
    while checking that no flag is in flight, so an add-flag that locks the pipeline row cannot
    slip in between. None when there was nothing to change; Conflict (nothing saved) when
    flags are in flight."""
    pipeline_id = pipeline.id
    db.session.rollback()
    begin_immediate()
    conditions: list[ColumnElement[bool]] = [ReleasePipeline.deleted_at.is_(None)]
    if values.get("status") == "draft":
        conditions.append(ReleasePipeline.status == "published")
    if not compare_and_set(ReleasePipeline, pipeline_id, None, where=conditions,
                           updated_at=now(), **values):
        db.session.rollback()
        return None
    if in_flight_count(pipeline_id):
        db.session.rollback()
        raise Conflict(IN_FLIGHT_MESSAGE)
    return db.session.get(ReleasePipeline, pipeline_id, populate_existing=True) or pipeline


# ---------------------------------------------------------------------------------------------
# Helpers


def open_draft(pipeline: ReleasePipeline, version: Any, *,
                whole: bool = False) -> tuple[ReleasePipeline, int]:
    """Start the edit's unit of work and reload the pipeline in it; return it with the version
    the edit was made against, if that is still the current one of a live draft.

    On SQLite the unit of work holds the write lock from here (BEGIN IMMEDIATE): a read-then-
    write transaction would otherwise fail outright when any other writer committed in between.
    On PostgreSQL the compare-and-set in `_claim` is the guard.
    """
    project_id, pipeline_id = pipeline.project_id, pipeline.id
    db.session.rollback()  # end the caller's read-only transaction
    begin_immediate()
    query = select(ReleasePipeline).where(
        ReleasePipeline.id == pipeline_id, ReleasePipeline.project_id == project_id,
        ReleasePipeline.deleted_at.is_(None))
    if whole:
        query = query.options(
            selectinload(ReleasePipeline.stages).selectinload(PipelineStage.actions))
    # Otherwise stages load on first use, and only the edited stage's actions: most edits
    # touch one stage, and the builder answers within a tight time budget.
    draft = db.session.scalar(query)
    if draft is None:
        raise NotFound("Pipeline not found.")
    if not draft.is_draft:
        raise Conflict(PUBLISHED_MESSAGE)
    try:
        expected = int(str(version).strip())
    except (TypeError, ValueError):
        raise Conflict(STALE_MESSAGE) from None
    if expected != draft.version:
        raise Conflict(STALE_MESSAGE)
    return draft, expected


def claim_version(pipeline: ReleasePipeline, expected: int, **values: Any) -> None:
    """Compare-and-set: bump the version only if nobody else did since `expected`, and only
    while the pipeline is a live draft. Another writer in between means Conflict, nothing saved."""
    live_draft = [ReleasePipeline.status == "draft", ReleasePipeline.deleted_at.is_(None)]
    if not compare_and_set(ReleasePipeline, pipeline.id, expected, where=live_draft,
                           updated_at=now(), **values):
        db.session.rollback()
        current = db.session.get(ReleasePipeline, pipeline.id)
        if current is not None and not current.is_draft:
            raise Conflict(PUBLISHED_MESSAGE)
        raise Conflict(STALE_MESSAGE)


def _stage_of(pipeline: ReleasePipeline, stage_id: Any) -> PipelineStage:
    for stage in pipeline.stages:
        if str(stage.id) == str(stage_id):
            return stage
    raise NotFound("Stage not found in this pipeline.")


def _action_of(pipeline: ReleasePipeline, action_id: Any) -> tuple[PipelineStage, StageAction]:
    number = ascii_int(action_id)
    action = db.session.scalar(
        select(StageAction)
        .join(PipelineStage, PipelineStage.id == StageAction.stage_id)
        .where(StageAction.id == number, PipelineStage.pipeline_id == pipeline.id)
    ) if number is not None else None
    if action is None:
        raise NotFound("Action not found in this pipeline.")
    return action.stage, action


def stage_snapshot(stage: PipelineStage) -> dict[str, Any]:
    return {
        "position": stage.position, "name": stage.name, "environment_id": stage.environment_id,
        "trigger_type": stage.trigger_type, "wait_seconds": stage.wait_seconds,
        "actions": [_action_snapshot(action) for action in stage.actions],
        **_checks_snapshot(stage),
    }


def _checks_snapshot(stage: PipelineStage) -> dict[str, Any]:
    """Health checks (issue 15) only where a stage has them, so older snapshots read the same."""
    if not stage.checks:
        return {}

    return {"on_unhealthy": stage.on_unhealthy,
            "health_checks": [check_inputs.check_snapshot(c) for c in stage.checks]}


def _action_snapshot(action: StageAction) -> dict[str, Any]:
    snapshot = {"position": action.position, "action_type": action.action_type}
    for key in ("enabled", "segment_id", "rollout_initial", "rollout_step",
                "rollout_interval_seconds"):
        if getattr(action, key) is not None:
            snapshot[key] = getattr(action, key)
    if action.sets_value:
        snapshot["value"] = action.value
    return snapshot


def audit_pipeline(actor: Actor, pipeline: ReleasePipeline, event: str, message: str, *,
           before: Any = None, after: Any = None) -> None:
    audit.record(actor, event, message, project_id=pipeline.project_id,
                 object_type="release_pipeline", object_id=pipeline.id,
                 object_label=pipeline.name, before=before, after=after,
                 pipeline_id=pipeline.id)


def _updated(actor: Actor, pipeline: ReleasePipeline, what: str, before: Any, after: Any, *,
             path: str) -> None:
    """Audit a builder edit (joining the actor's open editing session, edit_sessions), commit."""
    edit_sessions.record_edit(actor, pipeline, what, before, after, path=path)
    db.session.commit()
