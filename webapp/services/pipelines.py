"""Release pipelines as their builders see them: drafts edited stage by stage, then published.

Every draft edit is one use case: check the input, claim the pipeline with a compare-and-set on
its `version` (two editors never overwrite each other silently), change the rows, write one
RELEASE_PIPELINE_UPDATED audit entry saying what changed, commit. Published pipelines are
immutable: every edit is refused with Conflict whatever it carries.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import selectinload

from webapp.clock import now
from webapp.database import begin_immediate
from webapp.extensions import db
from webapp.models import (
    ACTION_TYPES,
    TRIGGER_TYPES,
    ChangeRequest,
    Environment,
    Feature,
    PipelineRun,
    PipelineStage,
    Project,
    ReleasePipeline,
    Segment,
    StageAction,
    StageExecution,
)
from webapp.parsing import ascii_int
from webapp.services import audit, pipeline_edits
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.timeline import human_duration

MAX_STAGES = 30
MAX_NAME = 255
MAX_WAIT_SECONDS = 365 * 86400
UNITS = {"minutes": 60, "hours": 3600, "days": 86400}
# A stage's wait may be any whole number of seconds (Flagsmith's wait_for is a duration; the API
# sends seconds). The builder offers minutes, hours and days, and seconds only for a wait set so.
WAIT_UNITS = {"seconds": 1, **UNITS}
ACTION_LABELS = {
    "TOGGLE_FEATURE": "Enable / disable for everyone",
    "UPDATE_FEATURE_VALUE": "Set the value for everyone",
    "TOGGLE_FEATURE_FOR_SEGMENT": "Enable / disable for a segment",
    "UPDATE_FEATURE_VALUE_FOR_SEGMENT": "Set the value for a segment",
    "PHASED_ROLLOUT": "Phased rollout",
}
SEGMENT_ACTIONS = ("TOGGLE_FEATURE_FOR_SEGMENT", "UPDATE_FEATURE_VALUE_FOR_SEGMENT")
TOGGLE_ACTIONS = ("TOGGLE_FEATURE", "TOGGLE_FEATURE_FOR_SEGMENT", "PHASED_ROLLOUT")
VALUE_ACTIONS = ("UPDATE_FEATURE_VALUE", "UPDATE_FEATURE_VALUE_FOR_SEGMENT")

PUBLISHED_MESSAGE = (
    "This pipeline is published and cannot be changed. Clone it to make a new draft."
)
STALE_MESSAGE = (
    "Someone else changed this pipeline since you opened it; nothing was saved. "
    "Here is its current state: check it and make your change again."
)
IN_FLIGHT_MESSAGE = "Flags are in flight in this pipeline; remove or finish them first."


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class PipelineSummary:
    pipeline: ReleasePipeline
    stage_count: int
    in_flight: int
    launched_recently: int


def list_pipelines(project_id: int) -> list[PipelineSummary]:
    """The project's live pipelines with their stage count, flags in flight and flags launched in
    the last 30 days (three grouped queries, whatever the number of pipelines)."""
    pipelines = list(db.session.scalars(
        select(ReleasePipeline)
        .where(ReleasePipeline.project_id == project_id, ReleasePipeline.deleted_at.is_(None))
        .order_by(ReleasePipeline.name, ReleasePipeline.id)
    ))
    ids = [p.id for p in pipelines]
    if not ids:
        return []
    stages = dict(db.session.execute(
        select(PipelineStage.pipeline_id, func.count())
        .where(PipelineStage.pipeline_id.in_(ids)).group_by(PipelineStage.pipeline_id)
    ).all())
    in_flight = dict(db.session.execute(
        select(PipelineRun.pipeline_id, func.count())
        .where(PipelineRun.pipeline_id.in_(ids), PipelineRun.ended_at.is_(None))
        .group_by(PipelineRun.pipeline_id)
    ).all())
    launched = dict(db.session.execute(
        select(PipelineRun.pipeline_id, func.count())
        .where(
            PipelineRun.pipeline_id.in_(ids),
            PipelineRun.end_reason == "launched",
            PipelineRun.ended_at >= now() - timedelta(days=30),
        )
        .group_by(PipelineRun.pipeline_id)
    ).all())
    return [
        PipelineSummary(p, stages.get(p.id, 0), in_flight.get(p.id, 0), launched.get(p.id, 0))
        for p in pipelines
    ]


def get_pipeline(project_id: int, pipeline_id: int) -> ReleasePipeline:
    """A live pipeline of the project with its stages, environments, actions and segments loaded.

    Raises NotFound for a deleted pipeline or one of another project.
    """
    pipeline = db.session.scalar(
        select(ReleasePipeline)
        .where(
            ReleasePipeline.id == pipeline_id,
            ReleasePipeline.project_id == project_id,
            ReleasePipeline.deleted_at.is_(None),
        )
        .options(
            selectinload(ReleasePipeline.stages).joinedload(PipelineStage.environment),
            selectinload(ReleasePipeline.stages).selectinload(PipelineStage.checks),
            selectinload(ReleasePipeline.stages)
            .selectinload(PipelineStage.actions)
            .joinedload(StageAction.segment)
            .load_only(Segment.name, Segment.project_id, Segment.is_system),
        )
        .execution_options(populate_existing=True)
    )
    if pipeline is None:
        raise NotFound("Pipeline not found.")
    return pipeline


def find_pipeline(project_id: int, pipeline_id: int) -> ReleasePipeline:
    """The live pipeline row alone (no stages), for callers that only need to know it exists in
    this project before an edit service loads it whole. NotFound otherwise."""
    pipeline = db.session.scalar(
        select(ReleasePipeline).where(
            ReleasePipeline.id == pipeline_id,
            ReleasePipeline.project_id == project_id,
            ReleasePipeline.deleted_at.is_(None),
        )
    )
    if pipeline is None:
        raise NotFound("Pipeline not found.")
    return pipeline


def segment_choices(project_id: int) -> list[Segment]:
    """The segments a pipeline action may target: the project's, without hidden system ones."""
    return list(db.session.scalars(
        select(Segment)
        .where(Segment.project_id == project_id, Segment.is_system.is_(False))
        .order_by(Segment.name, Segment.id)
    ))


def in_flight_count(pipeline_id: int) -> int:
    return db.session.scalar(
        select(func.count()).select_from(PipelineRun)
        .where(PipelineRun.pipeline_id == pipeline_id, PipelineRun.ended_at.is_(None))
    ) or 0


def pipelines_using_segment(segment_id: int) -> list[ReleasePipeline]:
    """Live pipelines with an action on this segment (a segment they use cannot be deleted)."""
    return list(db.session.scalars(
        select(ReleasePipeline)
        .join(PipelineStage, PipelineStage.pipeline_id == ReleasePipeline.id)
        .join(StageAction, StageAction.stage_id == PipelineStage.id)
        .where(StageAction.segment_id == segment_id, ReleasePipeline.deleted_at.is_(None))
        .distinct()
        .order_by(ReleasePipeline.name)
    ))


def wait_parts(seconds: int | None) -> tuple[int | None, str]:
    """A wait in seconds as (amount, unit) in the largest unit that divides it (seconds for a
    wait of whole seconds set through the API)."""
    if not seconds:
        return None, "hours"
    for unit in ("days", "hours", "minutes"):
        if seconds % UNITS[unit] == 0:
            return seconds // UNITS[unit], unit
    return seconds, "seconds"


def show_value(value: Any) -> str:
    """A stored action value as the builder shows it, with its type spelled out."""
    if value is None:
        return "no value (clears it)"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (boolean)"
    if isinstance(value, int):
        return f"{value} (integer)"
    return f"“{value}” (text)"


def value_as_input(action: StageAction) -> str:
    """The text that, typed into the value field, gives back the stored value."""
    value = action.value
    if not action.sets_value or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if _parse_value(value) != value:  # a text that would read as a number or boolean
        return f'"{value}"'
    return value


def describe_action(action: StageAction) -> str:
    """An action in words: "Enable for everyone", "Set the value to 42 (integer) for Beta"..."""
    kind = action.action_type
    state = "Enable" if action.enabled else "Disable"
    segment = f"segment {action.segment.name}" if action.segment else "a segment (none chosen)"
    if kind == "TOGGLE_FEATURE":
        return f"{state} for everyone"
    if kind == "UPDATE_FEATURE_VALUE":
        return f"Set the value to {show_value(action.value)} for everyone"
    if kind == "TOGGLE_FEATURE_FOR_SEGMENT":
        return f"{state} for {segment}"
    if kind == "UPDATE_FEATURE_VALUE_FOR_SEGMENT":
        return f"Set the value to {show_value(action.value)} for {segment}"
    if kind == "PHASED_ROLLOUT":
        every = human_duration(action.rollout_interval_seconds or 0)
        text = (f"Phased rollout: {state.lower()} for {action.rollout_initial} %, "
                f"+{action.rollout_step} % every {every}")
        if action.sets_value:
            text += f", value {show_value(action.value)}"
        return text
    return f"Unknown action {kind}"


# ---------------------------------------------------------------------------------------------
# Create, clone, publish, unpublish, delete


def check_name(name: str | None, field: str = "name") -> str:
    name = (name or "").strip()
    if not name:
        raise Invalid("A name is required.", {field: ["A name is required."]})
    if len(name) > MAX_NAME:
        raise Invalid("Name too long.", {field: [f"At most {MAX_NAME} characters."]})
    return name


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
        name = f"{pipeline.name} (copy)"[:MAX_NAME]
    name = check_name(name)
    copy = ReleasePipeline(project_id=pipeline.project_id, name=name,
                           description=pipeline.description, created_by_id=actor.user_id)
    for stage in pipeline.stages:
        new_stage = PipelineStage(position=stage.position, name=stage.name,
                                  environment_id=stage.environment_id,
                                  trigger_type=stage.trigger_type, wait_seconds=stage.wait_seconds,
                                  on_unhealthy=stage.on_unhealthy)
        new_stage.checks = _copy_checks(stage)
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


def publish_problems(pipeline: ReleasePipeline) -> list[str]:
    """Everything that keeps the pipeline from being published, all at once (empty when fine)."""
    problems: list[str] = []
    stages = pipeline.stages
    if not stages:
        return ["Add at least one stage before publishing."]
    if len(stages) > MAX_STAGES:
        problems.append(f"A pipeline has at most {MAX_STAGES} stages; this one has {len(stages)}.")
    environments = _project_ids(Environment, pipeline.project_id)
    segments = _project_ids(Segment, pipeline.project_id, visible_only=True)
    for stage in stages:
        where = f"Stage {stage.position + 1}" + (f" ({stage.name})" if stage.name else "")
        if not (stage.name or "").strip():
            problems.append(f"{where}: give it a name.")
        if stage.environment_id is None:
            problems.append(f"{where}: choose an environment.")
        elif stage.environment_id not in environments:
            problems.append(f"{where}: its environment is not one of this project's.")
        if stage.trigger_type not in TRIGGER_TYPES:
            problems.append(f"{where}: unknown trigger {stage.trigger_type!r}.")
        elif stage.trigger_type == "WAIT_FOR" and not (
            stage.wait_seconds and 0 < stage.wait_seconds <= MAX_WAIT_SECONDS
        ):
            problems.append(f"{where}: the wait must be more than 0 and at most 365 days.")
        if not stage.actions:
            problems.append(f"{where}: add at least one action.")
        rollouts = 0
        for action in stage.actions:
            label = f"{where}, action {action.position + 1}"
            problems.extend(f"{label}: {p}" for p in _action_problems(action, segments))
            rollouts += action.action_type == "PHASED_ROLLOUT"
        if rollouts > 1:
            problems.append(f"{where}: at most one phased rollout per stage.")
        problems.extend(_check_problems(where, stage))
    return problems


def _check_problems(where: str, stage: PipelineStage) -> list[str]:
    from webapp.services import health_checks

    return [f"{where}, health check {check.position + 1}: {problem}"
            for check in stage.checks for problem in health_checks.check_problems(check)]


def _copy_checks(stage: PipelineStage) -> list:
    from webapp.services import health_checks

    return health_checks.copy_checks(stage)


def publish_pipeline(pipeline: ReleasePipeline, version: Any, actor: Actor) -> None:
    """Publish a draft: it becomes immutable and flags can be added to it.

    Refuses (Invalid, every problem listed under "publish") a pipeline that is empty, too long,
    or has a stage without a name, an environment of this project, a valid trigger or a valid
    action; refuses a published or stale pipeline (Conflict). Audited as RELEASE_PIPELINE_PUBLISHED.
    """
    pipeline, expected = open_draft(pipeline, version, whole=True)
    problems = publish_problems(pipeline)
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
    pipeline = _lock(pipeline, status="draft")
    if pipeline is None:
        raise Conflict("This pipeline is already a draft.")
    audit_pipeline(actor, pipeline, "RELEASE_PIPELINE_UNPUBLISHED",
                   f"Release pipeline {pipeline.name} turned back into a draft",
                   before={"status": "published"}, after={"status": "draft"})
    db.session.commit()


def delete_pipeline(pipeline: ReleasePipeline, actor: Actor) -> None:
    """Soft-delete a pipeline (its name stays in the audit history). Refuses while flags are in
    flight (Conflict). Audited as RELEASE_PIPELINE_DELETED."""
    status = pipeline.status
    pipeline = _lock(pipeline, deleted_at=now())
    if pipeline is None:
        raise NotFound("Pipeline not found.")
    audit_pipeline(actor, pipeline, "RELEASE_PIPELINE_DELETED",
                   f"Release pipeline {pipeline.name} deleted",
                   before={"name": pipeline.name, "status": status})
    db.session.commit()


def _lock(pipeline: ReleasePipeline, **values: Any) -> ReleasePipeline | None:
    """Write `values` to the live pipeline (unpublish: only if published) and keep the row locked
    while checking that no flag is in flight, so an add-flag that locks the pipeline row cannot
    slip in between. None when there was nothing to change; Conflict (nothing saved) when
    flags are in flight."""
    pipeline_id = pipeline.id
    db.session.rollback()
    begin_immediate()
    conditions = [ReleasePipeline.id == pipeline_id, ReleasePipeline.deleted_at.is_(None)]
    if values.get("status") == "draft":
        conditions.append(ReleasePipeline.status == "published")
    result = db.session.execute(
        update(ReleasePipeline).where(*conditions)
        .values(version=ReleasePipeline.version + 1, updated_at=now(), **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.rollback()
        return None
    if in_flight_count(pipeline_id):
        db.session.rollback()
        raise Conflict(IN_FLIGHT_MESSAGE)
    return db.session.get(ReleasePipeline, pipeline_id, populate_existing=True) or pipeline


def check_values_fit(pipeline: ReleasePipeline, feature: Feature) -> list[str]:
    """Problems adding `feature` to `pipeline` would meet: actions whose value does not fit the
    flag's type (a value of None always fits: it clears the value). Empty when all fit."""
    problems = []
    for stage in pipeline.stages:
        for action in stage.actions:
            if not action.sets_value or action.value is None:
                continue
            if not _fits(feature.value_type, action.value):
                problems.append(
                    f"Stage {stage.position + 1} ({stage.name}), action {action.position + 1} sets "
                    f"the value {show_value(action.value)}, but {feature.name} "
                    + ("takes no value." if feature.value_type == "none"
                       else f"takes {_TYPE_WORDS[feature.value_type]} values.")
                )
    return problems


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


def parse_trigger(data: dict[str, Any]) -> tuple[str, int | None]:
    """(trigger_type, wait_seconds) from `trigger_type` (ON_ENTER, the default, or WAIT_FOR with
    `wait_amount` and `wait_unit`). Refuses an unknown trigger and a bad wait (Invalid)."""
    trigger = data.get("trigger_type", "ON_ENTER")
    if trigger not in TRIGGER_TYPES:
        raise Invalid("Unknown trigger.", {"trigger_type": [
            "Choose “When the flag enters this stage” or “Wait”."]})
    if trigger == "ON_ENTER":
        return trigger, None
    return trigger, parse_duration(data.get("wait_amount"), data.get("wait_unit"),
                                   "wait_amount", "wait", units=WAIT_UNITS)


def remove_stage(pipeline: ReleasePipeline, version: Any, stage_id: Any, actor: Actor) -> None:
    """Remove a stage and its actions; later stages move up (positions stay 0..n-1). Refuses a
    published or stale pipeline. Audited as RELEASE_PIPELINE_UPDATED."""
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


def stages_have_history(stage_ids: list[int]) -> bool:
    """Whether runs, stage executions or change requests point at any of these stages (a
    pipeline that was published and then unpublished): such a stage must stay."""
    if not stage_ids:
        return False
    return any(
        db.session.scalar(select(column).where(column.in_(stage_ids)).limit(1)) is not None
        for column in (PipelineRun.stage_id, StageExecution.stage_id, ChangeRequest.stage_id))


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


# ---------------------------------------------------------------------------------------------
# Parsing input


def parse_duration(amount: Any, unit: Any, field: str, what: str = "interval",
                   units: dict[str, int] = UNITS) -> int:
    """A whole number of minutes/hours/days (or another of `units`) as seconds, above 0 and at
    most 365 days."""
    if unit not in units:
        raise Invalid(f"Unknown {what} unit.", {field: ["Choose minutes, hours or days."]})
    text = str(amount if amount is not None else "").strip()
    try:
        number = int(text)
    except ValueError:
        doing = "wait" if what == "wait" else "wait between steps"
        message = (f"Enter the {what} as a whole number of {unit}." if text
                   else f"Enter how many {unit} to {doing}.")
        raise Invalid(f"Bad {what}.", {field: [message]}) from None
    if number <= 0:
        raise Invalid(f"Bad {what}.", {field: [f"The {what} must be more than 0."]})
    seconds = number * units[unit]
    if seconds > MAX_WAIT_SECONDS:
        raise Invalid(f"Bad {what}.", {field: [f"The {what} can be at most 365 days."]})
    return seconds


def parse_value(raw: Any) -> Any:
    """Typed JSON from the value field: true/false → boolean, whole numbers → integer, text in
    double quotes → that text, anything else → text, empty → None (clears the value)."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        return raw
    return _parse_value(raw.strip())


def _parse_value(text: str) -> Any:
    if text == "":
        return None
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def _parse_enabled(raw: Any) -> bool | None:
    if isinstance(raw, bool):
        return raw
    text = str(raw or "").strip().lower()
    if text in ("true", "on", "1", "enable", "enabled"):
        return True
    if text in ("false", "off", "0", "disable", "disabled"):
        return False
    return None


def _parse_percent(raw: Any, field: str, what: str) -> int:
    text = str(raw if raw is not None else "").strip()
    try:
        number = int(text)
    except ValueError:
        raise Invalid("Bad percentage.",
                      {field: [f"Enter the {what} as a whole percentage, 1 to 100."]}) from None
    if not 0 < number <= 100:
        raise Invalid("Bad percentage.",
                      {field: [f"The {what} must be more than 0 % and at most 100 %."]})
    return number


def action_fields(project_id: int, data: dict[str, Any]) -> dict[str, Any]:
    """The action's columns from form text; Invalid lists every bad field at once."""
    kind = data.get("action_type")
    if kind not in ACTION_TYPES:
        raise Invalid("Unknown action.", {"action_type": ["Choose one of the listed actions."]})
    fields: dict[str, Any] = {
        "action_type": kind, "enabled": None, "value": None, "sets_value": False,
        "segment_id": None, "rollout_initial": None, "rollout_step": None,
        "rollout_interval_seconds": None,
    }
    errors: dict[str, list[str]] = {}

    def attempt(key: str, parse) -> None:
        try:
            fields[key] = parse()
        except Invalid as error:
            errors.update(error.field_errors)

    if kind in TOGGLE_ACTIONS:
        enabled = _parse_enabled(data.get("enabled", "true" if kind == "PHASED_ROLLOUT" else None))
        if enabled is None:
            errors["enabled"] = ["Choose enable or disable."]
        fields["enabled"] = enabled
    if kind in SEGMENT_ACTIONS:
        attempt("segment_id", lambda: _segment(project_id, data.get("segment_id")))
    if kind in VALUE_ACTIONS:
        fields["value"], fields["sets_value"] = parse_value(data.get("value")), True
    if kind == "PHASED_ROLLOUT":
        attempt("rollout_initial", lambda: _parse_percent(data.get("rollout_initial"),
                                                          "rollout_initial", "initial percentage"))
        attempt("rollout_step", lambda: _parse_percent(data.get("rollout_step"),
                                                       "rollout_step", "increase"))
        attempt("rollout_interval_seconds", lambda: parse_duration(
            data.get("rollout_every"), data.get("rollout_unit"), "rollout_every", "interval"))
        value = parse_value(data.get("value"))
        if value is not None:
            fields["value"], fields["sets_value"] = value, True
    if errors:
        raise Invalid("The action was not saved.", errors)
    return fields


def _action_problems(action: StageAction, segments: set[int]) -> list[str]:
    """What is wrong with a stored action (publish re-checks everything stored)."""
    kind = action.action_type
    if kind not in ACTION_TYPES:
        return [f"unknown action type {kind!r}."]
    problems = []
    if kind in TOGGLE_ACTIONS and action.enabled is None:
        problems.append("choose enable or disable.")
    if kind in SEGMENT_ACTIONS and action.segment_id not in segments:
        problems.append("choose one of this project's segments.")
    if kind == "PHASED_ROLLOUT":
        for value, what in ((action.rollout_initial, "initial percentage"),
                            (action.rollout_step, "increase")):
            if value is None or not 0 < value <= 100:
                problems.append(f"the {what} must be more than 0 % and at most 100 %.")
        interval = action.rollout_interval_seconds
        if not interval or not 0 < interval <= MAX_WAIT_SECONDS:
            problems.append("the interval must be more than 0 and at most 365 days.")
    return problems


_TYPE_WORDS = {"string": "text", "integer": "whole-number", "boolean": "true/false"}


def _fits(value_type: str, value: Any) -> bool:
    if value_type == "string":
        return isinstance(value, str)
    if value_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if value_type == "boolean":
        return isinstance(value, bool)
    return False


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
    pipeline = db.session.scalar(query)
    if pipeline is None:
        raise NotFound("Pipeline not found.")
    if not pipeline.is_draft:
        raise Conflict(PUBLISHED_MESSAGE)
    try:
        expected = int(str(version).strip())
    except (TypeError, ValueError):
        raise Conflict(STALE_MESSAGE) from None
    if expected != pipeline.version:
        raise Conflict(STALE_MESSAGE)
    return pipeline, expected


def claim_version(pipeline: ReleasePipeline, expected: int, **values: Any) -> None:
    """Compare-and-set: bump the version only if nobody else did since `expected`, and only
    while the pipeline is a live draft. Another writer in between means Conflict, nothing saved."""
    result = db.session.execute(
        update(ReleasePipeline)
        .where(
            ReleasePipeline.id == pipeline.id,
            ReleasePipeline.version == expected,
            ReleasePipeline.status == "draft",
            ReleasePipeline.deleted_at.is_(None),
        )
        .values(version=expected + 1, updated_at=now(), **values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
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


def environment_of(project_id: int, raw: Any) -> Environment | None:
    if raw is None or str(raw).strip() == "":
        return None
    environment = None
    if (number := ascii_int(raw)) is not None:
        environment = db.session.get(Environment, number)
    if environment is None or environment.project_id != project_id:
        raise Invalid("Unknown environment.",
                      {"environment_id": ["Choose one of this project's environments."]})
    return environment


def _segment(project_id: int, raw: Any) -> int:
    text = str(raw if raw is not None else "").strip()
    if not text:
        raise Invalid("Segment required.", {"segment_id": ["Choose a segment."]})
    number = ascii_int(text)
    segment = db.session.get(Segment, number) if number is not None else None
    if segment is None or segment.project_id != project_id or segment.is_system:
        raise Invalid("Unknown segment.",
                      {"segment_id": ["Choose one of this project's segments."]})
    return segment.id


def _refuse_second_rollout(stage: PipelineStage, kind: str, editing: StageAction | None) -> None:
    if kind == "PHASED_ROLLOUT" and any(
        a.action_type == "PHASED_ROLLOUT" and a is not editing for a in stage.actions
    ):
        raise Invalid("One phased rollout per stage.",
                      {"action_type": ["This stage already has a phased rollout "
                                       "(at most one per stage)."]})


def _project_ids(model, project_id: int, visible_only: bool = False) -> set[int]:
    query = select(model.id).where(model.project_id == project_id)
    if visible_only:
        query = query.where(model.is_system.is_(False))
    return set(db.session.scalars(query))


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
    from webapp.services import health_checks

    return {"on_unhealthy": stage.on_unhealthy,
            "health_checks": [health_checks.check_snapshot(c) for c in stage.checks]}


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
    pipeline_edits.record_edit(actor, pipeline, what, before, after, path=path)
    db.session.commit()


def _stage_path(position: int) -> str:
    return f"Stage {position + 1}"


def _action_path(stage: PipelineStage, position: int) -> str:
    return f"Stage {stage.position + 1} · Action {position + 1}"
