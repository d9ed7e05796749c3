"""Release pipelines defined whole: a draft created with all its stages and actions, or a draft's
stages replaced, each in one unit of work (the admin API's create and update).

The builder's rules apply unchanged: every stage and action goes through the builder's own
parsers and compare-and-set (pipelines/inputs.py, pipelines/drafts.py), so both accept and
refuse exactly the same things. Every problem is reported at once under a path naming the stage
and the action (`stages[1].actions[0].segment_id`), and nothing is written unless all of it is
valid.

A stage is given as `update_stage` takes one (`name`, `environment_id`, `trigger_type`,
`wait_amount`, `wait_unit`) plus `actions`, a list of what `add_action` takes.
"""

from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from webapp.database import begin_immediate
from webapp.extensions import db
from webapp.models import (
    PipelineStage,
    Project,
    ReleasePipeline,
    StageAction,
)
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid
from webapp.services.pipelines import catalog, check_inputs, drafts, inputs
from webapp.services.platform import projects

P = ParamSpec("P")
T = TypeVar("T")
NOT_SAVED = "The pipeline was not saved."
Parsed = list[tuple[dict[str, Any], list[dict[str, Any]]]]  # per stage: its columns, its actions'


def create_pipeline(project: Project, actor: Actor, *, name: str, description: str = "",
                    stages: list[dict[str, Any]]) -> ReleasePipeline:
    """Create a draft pipeline with its stages and actions.

    Refuses (Invalid, every problem listed by path, nothing written) a bad name, more than 30
    stages, and any stage or action the builder would refuse. Audited as
    RELEASE_PIPELINE_CREATED with the stages.
    """
    project_id = project.id
    db.session.rollback()  # this unit of work reads (environments, segments) and then writes
    begin_immediate()
    errors: dict[str, list[str]] = {}
    name = _attempt(errors, "", projects.check_name, name) or ""  # None: refused below
    parsed = _parse_stages(project_id, stages, errors)
    if errors:
        raise Invalid(NOT_SAVED, errors)
    pipeline = ReleasePipeline(project_id=project_id, name=name,
                               description=(description or "").strip(),
                               created_by_id=actor.user_id)
    pipeline.stages = [_stage_row(position, columns, actions)
                       for position, (columns, actions) in enumerate(parsed)]
    db.session.add(pipeline)
    db.session.flush()
    drafts.audit_pipeline(actor, pipeline, "RELEASE_PIPELINE_CREATED",
                             f"Release pipeline {name} created",
                             after=_definition(pipeline.name, pipeline.description,
                                               pipeline.stages))
    db.session.commit()
    return pipeline


def replace_pipeline(pipeline: ReleasePipeline, version: Any, actor: Actor, *, name: str,
                     description: str, stages: list[dict[str, Any]]) -> None:
    """Replace a draft's name, description and stages with the given ones. Stages keep their
    ids position by position (their actions are replaced); stages beyond the new count go.

    Refuses what `create_pipeline` refuses (Invalid), a published or stale pipeline (Conflict),
    and dropping a stage that flags went through (Conflict: its history points at it). Audited
    as RELEASE_PIPELINE_UPDATED with the definition before and after; no entry when nothing
    changes.
    """
    pipeline, expected = drafts.open_draft(pipeline, version, whole=True)
    errors: dict[str, list[str]] = {}
    name = _attempt(errors, "", projects.check_name, name) or ""  # None: refused below
    parsed = _parse_stages(pipeline.project_id, stages, errors)
    if errors:
        raise Invalid(NOT_SAVED, errors)
    description = (description or "").strip()
    wanted = [_stage_row(position, columns, actions)
              for position, (columns, actions) in enumerate(parsed)]
    before = _definition(pipeline.name, pipeline.description, pipeline.stages)
    after = _definition(name, description, wanted)
    if before == after:
        db.session.rollback()
        return
    surplus = pipeline.stages[len(wanted):]
    if catalog.stages_have_history([stage.id for stage in surplus]):
        raise Conflict("A stage this would remove has release history (flags went through it); "
                       "keep it, or clone the pipeline and change the copy.")
    drafts.claim_version(pipeline, expected)
    pipeline.name, pipeline.description = name, description
    for stage, new in zip(pipeline.stages, wanted, strict=False):
        for column in ("name", "environment_id", "trigger_type", "wait_seconds", "on_unhealthy"):
            setattr(stage, column, getattr(new, column))
        stage.checks = check_inputs.copy_checks(new)
        stage.actions = [_action_row(action.position, _action_columns(action))
                         for action in new.actions]
    for stage in surplus:
        pipeline.stages.remove(stage)
    pipeline.stages.extend(wanted[len(pipeline.stages):])
    db.session.flush()
    drafts.audit_pipeline(actor, pipeline, "RELEASE_PIPELINE_UPDATED",
                             f"Release pipeline {name}: stages replaced ({len(wanted)} stage(s))",
                             before=before, after=after)
    db.session.commit()


# --- parsing ---------------------------------------------------------------------------------


def _parse_stages(project_id: int, stages: list[dict[str, Any]],
                  errors: dict[str, list[str]]) -> Parsed:
    if len(stages) > inputs.MAX_STAGES:
        errors["stages"] = [f"A pipeline has at most {inputs.MAX_STAGES} stages."]
    parsed: Parsed = []
    for index, spec in enumerate(stages):
        where = f"stages[{index}]."
        columns: dict[str, Any] = {
            "name": _attempt(errors, where, projects.check_name, spec.get("name")),
        }
        environment = _attempt(errors, where, inputs.environment_of, project_id,
                               spec.get("environment_id"))
        columns["environment_id"] = environment.id if environment else None
        columns["trigger_type"], columns["wait_seconds"] = _attempt(
            errors, where, inputs.parse_trigger, spec) or ("ON_ENTER", None)
        columns.update(_attempt(errors, where, check_inputs.parse_stage_checks, spec) or {})
        actions = []
        rollouts = 0
        for number, data in enumerate(spec.get("actions") or []):
            here = f"{where}actions[{number}]."
            fields = _attempt(errors, here, inputs.action_fields, project_id, data)
            if fields is None:
                continue
            rollouts += fields["action_type"] == "PHASED_ROLLOUT"
            if fields["action_type"] == "PHASED_ROLLOUT" and rollouts > 1:
                errors[f"{here}action_type"] = ["This stage already has a phased rollout "
                                                "(at most one per stage)."]
            actions.append(fields)
        parsed.append((columns, actions))
    return parsed


def _attempt(errors: dict[str, list[str]], prefix: str, parse: Callable[P, T],
             *args: P.args, **kwargs: P.kwargs) -> T | None:
    """parse(*args, **kwargs), or None with its field errors added to `errors` under `prefix`."""
    try:
        return parse(*args, **kwargs)
    except Invalid as error:
        where = error.field_errors or {"": [error.message]}
        for field, messages in where.items():
            errors.setdefault(f"{prefix}{field}".rstrip(".") or "non_field_errors",
                              []).extend(messages)
        return None


# --- rows ------------------------------------------------------------------------------------


def _stage_row(position: int, columns: dict[str, Any],
               actions: list[dict[str, Any]]) -> PipelineStage:
    return PipelineStage(position=position, **columns,
                         actions=[_action_row(number, fields)
                                  for number, fields in enumerate(actions)])


def _action_row(position: int, fields: dict[str, Any]) -> StageAction:
    return StageAction(position=position, **fields)


def _action_columns(action: StageAction) -> dict[str, Any]:
    return {column: getattr(action, column) for column in (
        "action_type", "enabled", "value", "sets_value", "segment_id", "rollout_initial",
        "rollout_step", "rollout_interval_seconds")}


def _definition(name: str, description: str, stages: list[PipelineStage]) -> dict[str, Any]:
    return {"name": name, "description": description,
            "stages": [drafts.stage_snapshot(stage) for stage in stages]}
