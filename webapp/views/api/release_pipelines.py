"""Admin API: a project's release pipelines (`/api/v1/projects/<id>/release-pipelines/`), in
Flagsmith's paths and shapes (webapp/views/api/pipeline_schemas.py): drafts defined whole with
their stages and actions, then published, unpublished, cloned, deleted; and the flags in them
added, removed, paused, resumed, advanced and rolled back.

Bad input answers 422 with a message list per field, keyed by the field's path in the request
(`stages[1].actions[0].action_body.segment_id`), and nothing is saved. Viewers read; editors
change. After a flag's run is made due, its advance is enqueued, as the dashboard does.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from marshmallow import Schema, ValidationError

from jobs import transitions
from webapp.models import PipelineRun, PipelineStage, Project, ReleasePipeline
from webapp.services.errors import Conflict, Invalid
from webapp.services.pages import flag_runs
from webapp.services.pipelines import builder, catalog, check_inputs, definitions, drafts
from webapp.services.platform import api_auth
from webapp.services.runs import controls, flag_intake
from webapp.services.runs.planning import Bell
from webapp.views.api import bp
from webapp.views.api.common import (
    iso,
    json_object,
    operation,
    paginate_list,
    principal,
    wire_errors,
)
from webapp.views.api.pipeline_schemas import (
    PipelineCloneSchema,
    PipelineCreateSchema,
    PipelineFeaturesAddedSchema,
    PipelineFeatureSchema,
    PipelineFeaturesSchema,
    PipelineFlagRunSchema,
    PipelinePatchSchema,
    PipelinePublishSchema,
    PipelineReplaceSchema,
    PipelineSchema,
    PipelineSummarySchema,
    action_body_of,
    stage_input,
    stage_order,
    trigger_of,
    wire_path,
)
from webapp.views.api.schemas import page_schema

BASE = "/projects/<int:project_id>/release-pipelines"
ONE = f"{BASE}/<int:pipeline_id>"
TAG = "release pipelines"


# --- answers ------------------------------------------------------------------------------------

def _summary(item: catalog.PipelineSummary) -> dict:
    return {**_head(item.pipeline), "stages_count": item.stage_count,
            "flags_in_flight": item.in_flight}


def _head(pipeline: ReleasePipeline) -> dict:
    return {"id": pipeline.id, "name": pipeline.name, "description": pipeline.description or "",
            "project": pipeline.project_id, "status": pipeline.status,
            "version": pipeline.version, "published_at": iso(pipeline.published_at)}


def _detail(project_id: int, pipeline_id: int) -> dict:
    pipeline = catalog.get_pipeline(project_id, pipeline_id)
    flags = flag_runs.pipeline_flags(project_id, pipeline_id)
    in_stage = {stage.id: (items, count) for stage, items, count in flags.by_stage}
    return {**_head(pipeline), "stages_count": len(pipeline.stages),
            "flags_in_flight": sum(count for _items, count in in_stage.values()),
            "created_at": iso(pipeline.created_at), "updated_at": iso(pipeline.updated_at),
            "launched_count": flags.launched_count,
            "stages": [_stage(stage, *in_stage.get(stage.id, ([], 0)))
                       for stage in pipeline.stages]}


def _stage(stage: PipelineStage, items: list[tuple[PipelineRun, str]], count: int) -> dict:
    return {"id": stage.id, "name": stage.name, "environment": stage.environment_id,
            "order": stage.position, "trigger": trigger_of(stage),
            "actions": [{"id": action.id, "action_type": action.action_type,
                         "action_body": action_body_of(action)} for action in stage.actions],
            "health_checks": [check_inputs.check_snapshot(c) for c in stage.checks],
            "on_unhealthy": stage.on_unhealthy,
            "features": [_flag_run(run, name) for run, name in items],
            "features_count": count}


def _flag_run(run: PipelineRun, name: str) -> dict:
    return {"id": run.feature_id, "name": name, "run_id": run.id, "status": run.status,
            "stage": run.stage_id, "entered_at": iso(run.entered_at),
            "next_transition_at": iso(run.due_at) if run.ended_at is None else None,
            "ended_at": iso(run.ended_at), "end_reason": run.end_reason}


def _run_answer(run_id: int) -> dict:
    return _flag_run(*flag_runs.run_and_flag_name(run_id))


# --- requests -----------------------------------------------------------------------------------

def _load(schema: type[Schema], *, optional: bool = False) -> dict[str, Any]:
    """The JSON body loaded by `schema` (an empty body is `{}` when `optional`): 400 when it is
    not a JSON object, 422 with messages keyed by path."""
    try:
        return schema().load(json_object(optional=optional))
    except ValidationError as error:
        raise Invalid("Invalid input; nothing was saved.", _paths(error.messages_dict)) from None


def _paths(messages: dict, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages keyed by path: {"stages": {1: {"name": [...]}}} →
    {"stages[1].name": [...]}."""
    flat: dict[str, list[str]] = {}
    for key, value in messages.items():
        if key == "_schema":
            path = prefix or "non_field_errors"
        elif isinstance(key, int):
            path = f"{prefix}[{key}]"
        else:
            path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            for inner, texts in _paths(value, path).items():
                flat.setdefault(inner, []).extend(texts)
        else:
            flat.setdefault(path, []).extend(value if isinstance(value, list) else [str(value)])
    return flat


def _stages_in(wire: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[int]]:
    """The services' stage input in pipeline order, and the request index of each."""
    listed = stage_order(wire)
    return [stage_input(wire[index]) for index in listed], listed


@contextmanager
def _wire_paths(listed: list[int]) -> Iterator[None]:
    try:
        yield
    except Invalid as error:
        renamed: dict[str, list[str]] = {}
        for path, messages in error.field_errors.items():
            renamed.setdefault(wire_path(path, listed), []).extend(messages)
        raise Invalid(error.message, renamed) from None


def _editable(project: Project, pipeline_id: int) -> ReleasePipeline:
    """A draft of the project (a published one is refused before its body is read)."""
    pipeline = catalog.find_pipeline(project.id, pipeline_id)
    if not pipeline.is_draft:
        raise Conflict(drafts.PUBLISHED_MESSAGE)
    return pipeline


# --- pipelines ----------------------------------------------------------------------------------

@bp.get(f"{BASE}/")
@operation("List a project's release pipelines", TAG,
           response=page_schema(PipelineSummarySchema), paginated=True)
def list_release_pipelines(project_id: int):
    project = api_auth.project_for(principal(), project_id)
    return paginate_list(catalog.list_pipelines(project.id), _summary, project_id=project_id)


@bp.post(f"{BASE}/")
@operation("Create a draft release pipeline with its stages and actions (editors; all or "
           "nothing: 422 names every bad field by its path)", TAG,
           body=PipelineCreateSchema, response=PipelineSchema, status=201)
def create_release_pipeline(project_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    data = _load(PipelineCreateSchema)
    stages, listed = _stages_in(data["stages"])
    with _wire_paths(listed):
        pipeline = definitions.create_pipeline(
            project, who.actor, name=data["name"], description=data["description"],
            stages=stages)
    return _detail(project_id, pipeline.id), 201


@bp.get(f"{ONE}/")
@operation("Read a release pipeline: its stages, their actions and the flags in each", TAG,
           response=PipelineSchema)
def get_release_pipeline(project_id: int, pipeline_id: int):
    project = api_auth.project_for(principal(), project_id)
    return _detail(project.id, pipeline_id)


@bp.put(f"{ONE}/")
@operation("Replace a draft's name, description and stages (editors; 409 once published or "
           "when `version` moved on)", TAG, body=PipelineReplaceSchema, response=PipelineSchema)
def replace_release_pipeline(project_id: int, pipeline_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    pipeline = _editable(project, pipeline_id)
    data = _load(PipelineReplaceSchema)
    _redefine(pipeline, data, who.actor, name=data["name"], description=data["description"])
    return _detail(project.id, pipeline_id)


@bp.patch(f"{ONE}/")
@operation("Change a draft's name, description or stages (editors; stages are replaced "
           "whole; 409 once published or when `version` moved on)", TAG,
           body=PipelinePatchSchema, response=PipelineSchema)
def update_release_pipeline(project_id: int, pipeline_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    pipeline = _editable(project, pipeline_id)
    data = _load(PipelinePatchSchema)
    name = data.get("name", pipeline.name)
    description = data.get("description", pipeline.description)
    if "stages" in data:
        _redefine(pipeline, data, who.actor, name=name, description=description)
    elif "name" in data or "description" in data:
        builder.update_details(pipeline, data["version"] or pipeline.version, who.actor,
                                 name=name, description=description)
    return _detail(project.id, pipeline_id)


def _redefine(pipeline: ReleasePipeline, data: dict[str, Any], actor, *, name: str,
              description: str) -> None:
    stages, listed = _stages_in(data["stages"])
    with _wire_paths(listed):
        definitions.replace_pipeline(
            pipeline, data["version"] or pipeline.version, actor, name=name,
            description=description, stages=stages)


@bp.delete(f"{ONE}/")
@operation("Delete a release pipeline (editors; 409 while flags are in it)", TAG, status=204)
def delete_release_pipeline(project_id: int, pipeline_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    builder.delete_pipeline(catalog.find_pipeline(project.id, pipeline_id), who.actor)
    return "", 204


@bp.post(f"{ONE}/publish-pipeline/")
@operation("Publish a draft (editors; 422 lists every problem under `problems`; 409 once "
           "published or when `version` moved on)", TAG, body=PipelinePublishSchema,
           response=PipelineSchema)
def publish_release_pipeline(project_id: int, pipeline_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    pipeline = catalog.find_pipeline(project.id, pipeline_id)
    data = _load(PipelinePublishSchema, optional=True)
    with wire_errors({"publish": "problems"}):
        builder.publish_pipeline(pipeline, data["version"] or pipeline.version, who.actor)
    return _detail(project.id, pipeline_id)


@bp.post(f"{ONE}/unpublish-pipeline/")
@operation("Turn a published pipeline back into a draft (editors; 409 for a draft or while "
           "flags are in it)", TAG, response=PipelineSchema)
def unpublish_release_pipeline(project_id: int, pipeline_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    builder.unpublish_pipeline(catalog.find_pipeline(project.id, pipeline_id), who.actor)
    return _detail(project.id, pipeline_id)


@bp.post(f"{ONE}/clone/")
@operation("Copy a pipeline (draft or published) into a new draft (editors)", TAG,
           body=PipelineCloneSchema, response=PipelineSchema, status=201)
def clone_release_pipeline(project_id: int, pipeline_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    source = catalog.get_pipeline(project.id, pipeline_id)
    data = _load(PipelineCloneSchema, optional=True)
    copy = builder.clone_pipeline(source, who.actor, data["name"])
    return _detail(project.id, copy.id), 201


# --- flags in a pipeline ------------------------------------------------------------------------

@bp.post(f"{ONE}/add-feature/")
@operation("Add a flag to a published pipeline: it enters the first stage now (editors; 409 "
           "for a draft or a flag already in a pipeline)", TAG, body=PipelineFeatureSchema,
           response=PipelineFlagRunSchema)
def add_pipeline_feature(project_id: int, pipeline_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    pipeline = catalog.find_pipeline(project.id, pipeline_id)
    data = _load(PipelineFeatureSchema)
    with wire_errors({"feature_ids": "feature_id"}):
        bell = controls.add_flag(project, pipeline.id, data["feature_id"], who.actor)
    transitions.ring([bell])
    return _run_answer(bell.run_id)


@bp.post(f"{ONE}/add-features/")
@operation("Add several flags to a published pipeline: every flag that can join is added and "
           "enters the first stage now; the others are listed under `refused` with the reason "
           "(another project's, already in a pipeline, a type the pipeline's values do not fit). "
           "200 when all were added, 207 when some were refused, 422 naming each flag when none "
           "could join (editors; 409 for a draft)", TAG, body=PipelineFeaturesSchema,
           response=PipelineFeaturesAddedSchema, also={207: PipelineFeaturesAddedSchema})
def add_pipeline_features(project_id: int, pipeline_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    pipeline = catalog.find_pipeline(project.id, pipeline_id)
    data = _load(PipelineFeaturesSchema)
    report = flag_intake.add_flags(project, pipeline.id, data["feature_ids"], who.actor)
    if not report.added:
        raise Invalid("No flag could join this pipeline.", {"feature_ids": [
            f"{o.name}: {o.reason}." for o in report.refused]})
    transitions.ring(report.bells)
    body = {"added": [{"feature_id": o.feature_id, "name": o.name, "run_id": o.run_id}
                      for o in report.added],
            "refused": [{"feature_id": o.feature_id, "name": o.name, "reason": o.reason}
                        for o in report.refused]}
    return body, 207 if report.refused else 200


def _control(project_id: int, pipeline_id: int,
             use_case: Callable[[Project, int, Any], Bell | None]) -> dict:
    """Find the flag's run in this pipeline (404 if it never was in it), act on it, enqueue
    the advance it made due, answer with the run."""
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    pipeline = catalog.find_pipeline(project.id, pipeline_id)
    data = _load(PipelineFeatureSchema)
    run_id = flag_runs.latest_run_id(pipeline.id, data["feature_id"])
    bell = use_case(project, run_id, who.actor)
    if bell is not None:
        transitions.ring([bell])
    return _run_answer(run_id)


def _control_operation(summary: str) -> Callable:
    return operation(summary, TAG, body=PipelineFeatureSchema, response=PipelineFlagRunSchema)


@bp.post(f"{ONE}/remove-feature/")
@_control_operation("Take a flag out of the pipeline; its states stay as they are (editors)")
def remove_pipeline_feature(project_id: int, pipeline_id: int):
    return _control(project_id, pipeline_id, controls.remove)


@bp.post(f"{ONE}/pause-feature/")
@_control_operation("Pause a waiting or rolling-out flag's clock (editors)")
def pause_pipeline_feature(project_id: int, pipeline_id: int):
    return _control(project_id, pipeline_id, controls.pause)


@bp.post(f"{ONE}/resume-feature/")
@_control_operation("Resume a paused flag with the time it had left (editors)")
def resume_pipeline_feature(project_id: int, pipeline_id: int):
    return _control(project_id, pipeline_id, controls.resume)


@bp.post(f"{ONE}/advance-feature/")
@_control_operation("Skip a waiting flag's remaining wait: its next step is due now (editors)")
def advance_pipeline_feature(project_id: int, pipeline_id: int):
    return _control(project_id, pipeline_id, controls.advance_now)


@bp.post(f"{ONE}/rollback-feature/")
@_control_operation("Roll a flag back: restore what the pipeline changed and take it out "
                    "(editors; a launched flag too, while it is its latest run)")
def rollback_pipeline_feature(project_id: int, pipeline_id: int):
    return _control(project_id, pipeline_id, controls.rollback)
