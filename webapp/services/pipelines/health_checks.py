"""Editing a draft's health checks (the builder's and the API's use cases): add, change, remove a
check; what an unhealthy stage does.

What the engine does with checks while a flag is in a stage lives in `runs/gates.py`.
"""

from typing import Any

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import PipelineStage, ReleasePipeline
from webapp.models.health import (
    StageHealthCheck,
)
from webapp.services.actors import Actor
from webapp.services.errors import Invalid, NotFound
from webapp.services.pipelines import drafts, edit_sessions
from webapp.services.pipelines.check_inputs import (
    KIND_LABELS,
    MAX_CHECKS,
    ON_UNHEALTHY_LABELS,
    check_fields,
    check_snapshot,
    parse_on_unhealthy,
)

# --- Editing a draft's checks (the builder) ------------------------------------------------------


def add_check(pipeline: ReleasePipeline, version: Any, stage_id: Any, data: dict[str, Any],
              actor: Actor) -> StageHealthCheck:
    """Append a health check to a draft's stage. Refuses bad fields (see `check_fields`), more
    than MAX_CHECKS, a published or stale pipeline. Audited as RELEASE_PIPELINE_UPDATED."""
    pipeline, expected = drafts.open_draft(pipeline, version)
    stage = _stage_of(pipeline, stage_id)
    fields = check_fields(data)
    if len(stage.checks) >= MAX_CHECKS:
        raise Invalid("Too many checks.", {"kind": [f"At most {MAX_CHECKS} checks per stage."]})
    drafts.claim_version(pipeline, expected)
    check = StageHealthCheck(position=len(stage.checks), **fields)
    stage.checks.append(check)
    db.session.flush()
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): health check "
             f"{check.position + 1} ({KIND_LABELS[check.kind]}) added", None,
             check_snapshot(check), path=_check_path(stage, check.position))
    return check


def update_check(pipeline: ReleasePipeline, version: Any, check_id: Any, data: dict[str, Any],
                 actor: Actor) -> None:
    """Replace a check's settings (same fields and refusals as `add_check`)."""
    pipeline, expected = drafts.open_draft(pipeline, version)
    stage, check = _check_of(pipeline, check_id)
    fields = check_fields(data)
    before = check_snapshot(check)
    drafts.claim_version(pipeline, expected)
    for key, value in fields.items():
        setattr(check, key, value)
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): health check "
             f"{check.position + 1} changed", before, check_snapshot(check),
             path=_check_path(stage, check.position))


def remove_check(pipeline: ReleasePipeline, version: Any, check_id: Any, actor: Actor) -> None:
    """Remove a check; later checks move up. Refuses a published or stale pipeline."""
    pipeline, expected = drafts.open_draft(pipeline, version)
    stage, check = _check_of(pipeline, check_id)
    drafts.claim_version(pipeline, expected)
    snapshot = check_snapshot(check)
    stage.checks.remove(check)
    db.session.flush()
    for position, other in enumerate(stage.checks):
        other.position = position
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): health check "
             f"{check.position + 1} removed", snapshot, None,
             path=_check_path(stage, check.position))


def set_on_unhealthy(pipeline: ReleasePipeline, version: Any, stage_id: Any, raw: Any,
                     actor: Actor) -> None:
    """What an unhealthy check does in this stage: HOLD or ROLL_BACK (both notify)."""
    pipeline, expected = drafts.open_draft(pipeline, version)
    stage = _stage_of(pipeline, stage_id)
    value = parse_on_unhealthy(raw)
    if value == stage.on_unhealthy:
        db.session.rollback()
        return
    drafts.claim_version(pipeline, expected)
    before = stage.on_unhealthy
    stage.on_unhealthy = value
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): when unhealthy, "
             f"{ON_UNHEALTHY_LABELS[value].lower()}", {"on_unhealthy": before},
             {"on_unhealthy": value}, path=f"Stage {stage.position + 1}")


def _stage_of(pipeline: ReleasePipeline, stage_id: Any) -> PipelineStage:
    for stage in pipeline.stages:
        if str(stage.id) == str(stage_id).strip():
            return stage
    raise NotFound("Stage not found in this pipeline.")


def _check_of(pipeline: ReleasePipeline, check_id: Any) -> tuple[PipelineStage, StageHealthCheck]:
    text = str(check_id).strip()
    check = db.session.scalar(
        select(StageHealthCheck)
        .join(PipelineStage, PipelineStage.id == StageHealthCheck.stage_id)
        .where(StageHealthCheck.id == int(text), PipelineStage.pipeline_id == pipeline.id)
    ) if text.isdigit() else None
    if check is None:
        raise NotFound("Health check not found in this pipeline.")
    stage = next(s for s in pipeline.stages if s.id == check.stage_id)
    return stage, next(c for c in stage.checks if c.id == check.id)


def _updated(actor: Actor, pipeline: ReleasePipeline, what: str, before: Any, after: Any, *,
             path: str) -> None:
    edit_sessions.record_edit(actor, pipeline, what, before, after, path=path)
    db.session.commit()


def _check_path(stage: PipelineStage, position: int) -> str:
    return f"Stage {stage.position + 1} · Health check {position + 1}"
