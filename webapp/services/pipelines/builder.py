"""Release pipelines as their builders see them: drafts edited stage by stage, then published.

Every draft edit is one use case: check the input, claim the pipeline with a compare-and-set on
its `version` (two editors never overwrite each other silently), change the rows, write one
RELEASE_PIPELINE_UPDATED audit entry saying what changed, commit. Published pipelines are
immutable: every edit is refused with Conflict whatever it carries.
"""

from typing import Any

from webapp.clock import now
from webapp.extensions import db
from webapp.models import (
    PipelineStage,
    Project,
    ReleasePipeline,
    StageAction,
)
from webapp.orm import fit
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.pipelines import check_inputs, readiness
from webapp.services.pipelines.catalog import stages_have_history
from webapp.services.pipelines.describe import ACTION_LABELS
from webapp.services.pipelines.drafts import (
    _action_of,
    _action_snapshot,
    _lock,
    _stage_of,
    _updated,
    audit_pipeline,
    claim_version,
    open_draft,
    stage_snapshot,
)
from webapp.services.pipelines.inputs import (
    MAX_STAGES,
    _refuse_second_rollout,
    action_fields,
    environment_of,
    parse_trigger,
)
from webapp.services.platform.projects import check_name


def create_pipeline(
    project: Project, name: str, actor: Actor, *, description: str = ""
) -> ReleasePipeline:
    """Create an empty draft pipeline. Refuses an empty or over-long name.
    Audited as RELEASE_PIPELINE_CREATED."""
    name = check_name(name)
    pipeline = ReleasePipeline(project_id=project.id, name=name,
                               description=(description or "").strip(),
                               created_by_id=actor.user_id)
    db.session.add(pipeline)
    db.session.flush()
    audit_pipeline(actor, pipeline, "RELEASE_PIPELINE_CREATED", f"Release pipeline {name} created",
                   after={"name": name, "description": pipeline.description})
    db.session.commit()
    return pipeline


def clone_pipeline(
    pipeline: ReleasePipeline, actor: Actor, name: str | None = None
) -> ReleasePipeline:
    """Copy a pipeline (draft or published) with its stages and actions into a new draft, named
    `name` or "<name> (copy)". Refuses an over-long name. Audited as RELEASE_PIPELINE_CLONED."""
    if name is None or not name.strip():
        name = fit(ReleasePipeline.name, f"{pipeline.name} (copy)")
    name = check_name(name)
    copy = ReleasePipeline(project_id=pipeline.project_id, name=name,
                           description=pipeline.description, created_by_id=actor.user_id)
    for stage in pipeline.stages:
        new_stage = PipelineStage(position=stage.position, name=stage.name,
                                  environment_id=stage.environment_id,
                                  trigger_type=stage.trigger_type, wait_seconds=stage.wait_seconds,
                                  on_unhealthy=stage.on_unhealthy)
        new_stage.checks = check_inputs.copy_checks(stage)
        for action in stage.actions:
            new_stage.actions.append(StageAction(
                position=action.position, action_type=action.action_type, enabled=action.enabled,
                value=action.value, sets_value=action.sets_value, segment_id=action.segment_id,
                rollout_initial=action.rollout_initial, rollout_step=action.rollout_step,
                rollout_interval_seconds=action.rollout_interval_seconds,
            ))
        copy.stages.append(new_stage)
    db.session.add(copy)
    db.session.flush()
    audit_pipeline(actor, copy, "RELEASE_PIPELINE_CLONED",
                   f"Release pipeline {name} cloned from {pipeline.name}",
                   before={"source_id": pipeline.id, "source_name": pipeline.name},
                   after={"name": name, "stages": len(copy.stages)})
    db.session.commit()
    return copy


def publish_pipeline(pipeline: ReleasePipeline, version: Any, actor: Actor) -> None:
    """Publish a draft: it becomes immutable and flags can be added to it.

    Refuses (Invalid, every problem listed under "publish") a pipeline that is empty, too long,
    or has a stage without a name, an environment of this project, a valid trigger or a valid
    action; refuses a published or stale pipeline (Conflict). Audited as RELEASE_PIPELINE_PUBLISHED.
    """
    pipeline, expected = open_draft(pipeline, version, whole=True)
    problems = readiness.publish_problems(pipeline)
    if problems:
        raise Invalid("This pipeline cannot be published yet.", {"publish": problems})
    claim_version(pipeline, expected, status="published", published_at=now(),
           published_by_id=actor.user_id)
    audit_pipeline(actor, pipeline, "RELEASE_PIPELINE_PUBLISHED",
                   f"Release pipeline {pipeline.name} published",
                   before={"status": "draft"},
                   after={"status": "published",
                  "stages": [stage_snapshot(stage) for stage in pipeline.stages]})
    db.session.commit()


def unpublish_pipeline(pipeline: ReleasePipeline, actor: Actor) -> None:
    """Turn a published pipeline back into a draft. Refuses a draft, or a pipeline with flags in
    flight (Conflict). Audited as RELEASE_PIPELINE_UNPUBLISHED."""
    locked = _lock(pipeline, status="draft")
    if locked is None:
        raise Conflict("This pipeline is already a draft.")
    audit_pipeline(actor, locked, "RELEASE_PIPELINE_UNPUBLISHED",
                   f"Release pipeline {locked.name} turned back into a draft",
                   before={"status": "published"}, after={"status": "draft"})
    db.session.commit()


def delete_pipeline(pipeline: ReleasePipeline, actor: Actor) -> None:
    """Soft-delete a pipeline (its name stays in the audit history). Refuses while flags are in
    flight (Conflict). Audited as RELEASE_PIPELINE_DELETED."""
    status = pipeline.status
    locked = _lock(pipeline, deleted_at=now())
    if locked is None:
        raise NotFound("Pipeline not found.")
    audit_pipeline(actor, locked, "RELEASE_PIPELINE_DELETED",
                   f"Release pipeline {locked.name} deleted",
                   before={"name": locked.name, "status": status})
    db.session.commit()


# ---------------------------------------------------------------------------------------------
# Draft edits (each: check, compare-and-set on version, change, audit, commit)


def update_details(pipeline: ReleasePipeline, version: Any, actor: Actor, *, name: str,
                   description: str = "") -> None:
    """Rename a draft or change its description. Refuses an empty or over-long name, a published
    or stale pipeline. Audited as RELEASE_PIPELINE_UPDATED."""
    pipeline, expected = open_draft(pipeline, version)
    name = check_name(name)
    description = (description or "").strip()
    before = {"name": pipeline.name, "description": pipeline.description}
    after = {"name": name, "description": description}
    if before == after:
        return
    claim_version(pipeline, expected)
    pipeline.name, pipeline.description = name, description
    _updated(actor, pipeline, f"renamed to {name}" if before["name"] != name
             else "description changed", before, after, path="")


def add_stage(pipeline: ReleasePipeline, version: Any, actor: Actor, *, name: str | None = None,
              environment_id: Any = None) -> PipelineStage:
    """Append a stage (ON_ENTER, no actions yet). Its name defaults to its environment's name or
    "Stage N". Refuses a 31st stage, a bad name, an environment not of this project, a published
    or stale pipeline. Audited as RELEASE_PIPELINE_UPDATED."""
    pipeline, expected = open_draft(pipeline, version)
    if len(pipeline.stages) >= MAX_STAGES:
        raise Invalid("Too many stages.",
                      {"stage": [f"A pipeline has at most {MAX_STAGES} stages."]})
    environment = environment_of(pipeline.project_id, environment_id)
    if not (name or "").strip():
        name = environment.name if environment else f"Stage {len(pipeline.stages) + 1}"
    name = check_name(name)
    claim_version(pipeline, expected)
    stage = PipelineStage(position=len(pipeline.stages), name=name,
                          environment_id=environment.id if environment else None)
    pipeline.stages.append(stage)
    db.session.flush()
    _updated(actor, pipeline, f"stage {stage.position + 1} ({name}) added", None,
             stage_snapshot(stage), path=_stage_path(stage.position))
    return stage


def update_stage(pipeline: ReleasePipeline, version: Any, stage_id: Any, data: dict[str, Any],
                 actor: Actor) -> None:
    """Change a stage's name, environment and trigger (keys absent from `data` stay as they are):
    `name`, `environment_id`, `trigger_type` (ON_ENTER | WAIT_FOR), `wait_amount` and `wait_unit`
    (minutes | hours | days). Refuses a bad name, an environment not of this project, an unknown
    trigger, a wait that is not a whole number above 0 and at most 365 days, a published or stale
    pipeline. Audited as RELEASE_PIPELINE_UPDATED with the fields that changed."""
    pipeline, expected = open_draft(pipeline, version)
    stage = _stage_of(pipeline, stage_id)
    errors: dict[str, list[str]] = {}
    changes: dict[str, Any] = {}
    if "name" in data:
        try:
            changes["name"] = check_name(data["name"])
        except Invalid as error:
            errors.update(error.field_errors)
    if "environment_id" in data:
        try:
            environment = environment_of(pipeline.project_id, data["environment_id"])
            changes["environment_id"] = environment.id if environment else None
        except Invalid as error:
            errors.update(error.field_errors)
    if "trigger_type" in data:
        try:
            changes["trigger_type"], changes["wait_seconds"] = parse_trigger(data)
        except Invalid as error:
            errors.update(error.field_errors)
    if errors:
        raise Invalid("The stage was not saved.", errors)
    before = {key: getattr(stage, key) for key in changes}
    changed = {key: value for key, value in changes.items() if before[key] != value}
    if not changed:
        return
    claim_version(pipeline, expected)
    for key, value in changed.items():
        setattr(stage, key, value)
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}) changed: "
             + ", ".join(sorted(changed)), {k: before[k] for k in changed}, changed,
             path=_stage_path(stage.position))


def remove_stage(pipeline: ReleasePipeline, version: Any, stage_id: Any,
                 actor: Actor) -> dict[str, Any]:
    """Remove a stage and its actions; later stages move up (positions stay 0..n-1). Refuses a
    published or stale pipeline. Audited as RELEASE_PIPELINE_UPDATED. Returns the removed
    stage's snapshot (stage_edits.restore_stage puts it back: Undo)."""
    pipeline, expected = open_draft(pipeline, version)
    stage = _stage_of(pipeline, stage_id)
    if stages_have_history([stage.id]):
        raise Conflict(f"Stage {stage.position + 1} ({stage.name}) has release history: flags "
                       "went through it. Keep it, or clone the pipeline and change the copy.")
    claim_version(pipeline, expected)
    snapshot = stage_snapshot(stage)
    pipeline.stages.remove(stage)
    db.session.flush()
    for position, other in enumerate(pipeline.stages):
        other.position = position
    _updated(actor, pipeline, f"stage {snapshot['position'] + 1} ({stage.name}) removed",
             snapshot, None, path=_stage_path(snapshot["position"]))
    return snapshot


def move_stage(pipeline: ReleasePipeline, version: Any, stage_id: Any, direction: str,
               actor: Actor) -> None:
    """Swap a stage with its neighbour ("up" or "down"). Refuses an unknown direction, moving the
    first stage up or the last down, a published or stale pipeline. Audited as
    RELEASE_PIPELINE_UPDATED."""
    pipeline, expected = open_draft(pipeline, version)
    stage = _stage_of(pipeline, stage_id)
    if direction not in ("up", "down"):
        raise Invalid("Unknown direction.", {"direction": ["Move up or down."]})
    target = stage.position + (-1 if direction == "up" else 1)
    if not 0 <= target < len(pipeline.stages):
        end = "first" if target < 0 else "last"
        raise Invalid("Cannot move further.", {"direction": [f"This stage is already the {end}."]})
    other = pipeline.stages[target]
    claim_version(pipeline, expected)
    before = stage.position
    stage.position, other.position = other.position, stage.position
    _updated(actor, pipeline, f"stage {stage.name} moved {direction}",
             {"stage": stage.name, "position": before + 1},
             {"stage": stage.name, "position": target + 1}, path=f"Stage “{stage.name}”")


def add_action(pipeline: ReleasePipeline, version: Any, stage_id: Any, data: dict[str, Any],
               actor: Actor) -> StageAction:
    """Append an action to a stage. `data` holds the form's text: `action_type` and, as the type
    needs, `enabled` ("true"/"false"), `value`, `segment_id`, `rollout_initial`, `rollout_step`,
    `rollout_every` and `rollout_unit`. Refuses an unknown type, a missing or foreign segment,
    rollout percentages outside (0, 100], a bad interval, a second phased rollout in the stage, a
    published or stale pipeline. Audited as RELEASE_PIPELINE_UPDATED."""
    pipeline, expected = open_draft(pipeline, version)
    stage = _stage_of(pipeline, stage_id)
    fields = action_fields(pipeline.project_id, data)
    _refuse_second_rollout(stage, fields["action_type"], None)
    claim_version(pipeline, expected)
    action = StageAction(position=len(stage.actions), **fields)
    stage.actions.append(action)
    db.session.flush()
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): action "
             f"{action.position + 1} ({ACTION_LABELS[action.action_type]}) added",
             None, _action_snapshot(action), path=_action_path(stage, action.position))
    return action


def update_action(pipeline: ReleasePipeline, version: Any, action_id: Any, data: dict[str, Any],
                  actor: Actor) -> None:
    """Replace an action's settings with those in `data` (same fields and refusals as
    `add_action`). Audited as RELEASE_PIPELINE_UPDATED with before and after."""
    pipeline, expected = open_draft(pipeline, version)
    stage, action = _action_of(pipeline, action_id)
    fields = action_fields(pipeline.project_id, data)
    _refuse_second_rollout(stage, fields["action_type"], action)
    before = _action_snapshot(action)
    if all(getattr(action, key) == value for key, value in fields.items()):
        return
    claim_version(pipeline, expected)
    for key, value in fields.items():
        setattr(action, key, value)
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): action "
             f"{action.position + 1} changed", before, _action_snapshot(action),
             path=_action_path(stage, action.position))


def remove_action(pipeline: ReleasePipeline, version: Any, action_id: Any, actor: Actor) -> None:
    """Remove an action; later actions move up. Refuses a published or stale pipeline.
    Audited as RELEASE_PIPELINE_UPDATED."""
    pipeline, expected = open_draft(pipeline, version)
    stage, action = _action_of(pipeline, action_id)
    claim_version(pipeline, expected)
    snapshot = _action_snapshot(action)
    stage.actions.remove(action)
    db.session.flush()
    for position, other in enumerate(stage.actions):
        other.position = position
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): action "
             f"{snapshot['position'] + 1} removed", snapshot, None,
             path=_action_path(stage, snapshot["position"]))


def move_action(pipeline: ReleasePipeline, version: Any, action_id: Any, direction: str,
                actor: Actor) -> None:
    """Swap an action with its neighbour in the stage ("up" or "down"). Refuses moving past the
    ends, a published or stale pipeline. Audited as RELEASE_PIPELINE_UPDATED."""
    pipeline, expected = open_draft(pipeline, version)
    stage, action = _action_of(pipeline, action_id)
    if direction not in ("up", "down"):
        raise Invalid("Unknown direction.", {"direction": ["Move up or down."]})
    target = action.position + (-1 if direction == "up" else 1)
    if not 0 <= target < len(stage.actions):
        raise Invalid("Cannot move further.", {"direction": ["The action cannot move further."]})
    other = stage.actions[target]
    claim_version(pipeline, expected)
    before = action.position
    action.position, other.position = other.position, action.position
    _updated(actor, pipeline, f"stage {stage.position + 1} ({stage.name}): action "
             f"{before + 1} moved {direction}", {"position": before + 1}, {"position": target + 1},
             path=_action_path(stage, before))


def _stage_path(position: int) -> str:
    """The audit field path of a stage, as the builder numbers it (edit_sessions)."""
    return f"Stage {position + 1}"


def _action_path(stage: PipelineStage, position: int) -> str:
    return f"Stage {stage.position + 1} · Action {position + 1}"
