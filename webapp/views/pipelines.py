"""Pipelines: the list, the builder (drafts), the read-only view (published), publish, unpublish,
clone and delete.

Every builder edit answers with the whole `builder` block: each edit bumps the pipeline's
version, and every form on the page carries it. A refused edit answers 422 with the errors
beside the field that caused them, or 409 with the pipeline's current state and why.
"""

from collections.abc import Callable
from typing import Any

from flask import Blueprint, current_app, redirect, request, url_for
from flask_login import login_required
from flask_wtf.csrf import generate_csrf
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup

from webapp.forms.pipelines import (
    ActionForm,
    BuilderState,
    CloneForm,
    MoveForm,
    PipelineForm,
    StageForm,
    VersionForm,
)
from webapp.htmx import location, render, wants_fragment
from webapp.models import Project, ReleasePipeline
from webapp.orm import fit
from webapp.services.errors import Conflict, Invalid
from webapp.services.pages import calendar_plans
from webapp.services.pipelines import (
    builder,
    catalog,
    check_inputs,
    describe,
    health_checks,
    stage_edits,
    timeline,
)
from webapp.services.pipelines.inputs import MAX_STAGES
from webapp.services.platform import projects
from webapp.views.context import actor, can, project_or_404

bp = Blueprint("pipelines", __name__)
PREFIX = "/projects/<int:project_id>/pipelines"


# --- list and create ---------------------------------------------------------------------------


@bp.get(PREFIX)
@login_required
def index(project_id: int):
    project = project_or_404(project_id)
    return _render_index(project, PipelineForm())


@bp.post(PREFIX)
@login_required
def create(project_id: int):
    project = project_or_404(project_id, "editor")
    form = PipelineForm()
    if form.validate_on_submit():
        try:
            pipeline = builder.create_pipeline(project, form.name.data, actor(),
                                                 description=form.description.data or "")
        except Invalid as error:
            _attach(form, error)
        else:
            return location(url_for("pipelines.detail", project_id=project.id,
                                    pipeline_id=pipeline.id))
    return _render_index(project, form, block="pipeline_form", status=422)


def _render_index(project: Project, form: PipelineForm, block: str = "pipeline_list",
                  status: int = 200):
    return render("pipelines/index.html", block, status=status, project=project, form=form,
                  summaries=catalog.list_pipelines(project.id), can_edit=can("editor"))


# --- the builder ---------------------------------------------------------------------------------


@bp.get(f"{PREFIX}/<int:pipeline_id>")
@login_required
def detail(project_id: int, pipeline_id: int):
    project = project_or_404(project_id)
    # ?open=action-7 or ?open=new-action-3: that action's form is shown (click to edit).
    # ?undo=…: the no-JavaScript answer to a stage removal, still offering Undo.
    return _render_builder(project, pipeline_id, open_key=request.args.get("open", ""),
                           undo=request.args.get("undo", ""))


@bp.post(f"{PREFIX}/<int:pipeline_id>/details")
@login_required
def update_details(project_id: int, pipeline_id: int):
    form = PipelineForm(meta={"csrf": False})
    return _edit(project_id, pipeline_id, "details", lambda p, v: builder.update_details(
        p, v, actor(), name=form.name.data, description=form.description.data or ""))


@bp.post(f"{PREFIX}/<int:pipeline_id>/stages")
@login_required
def add_stage(project_id: int, pipeline_id: int):
    form = StageForm()
    return _edit(project_id, pipeline_id, "new-stage", lambda p, v: builder.add_stage(
        p, v, actor(), name=form.name.data, environment_id=form.environment_id.data))


@bp.post(f"{PREFIX}/<int:pipeline_id>/stages/<int:stage_id>")
@login_required
def update_stage(project_id: int, pipeline_id: int, stage_id: int):
    form = StageForm()
    return _edit(project_id, pipeline_id, f"stage-{stage_id}", lambda p, v: builder.update_stage(
        p, v, stage_id, form.submitted(), actor()))


@bp.post(f"{PREFIX}/<int:pipeline_id>/stages/<int:stage_id>/move")
@login_required
def move_stage(project_id: int, pipeline_id: int, stage_id: int):
    form = MoveForm()
    return _edit(project_id, pipeline_id, f"stage-{stage_id}", lambda p, v: builder.move_stage(
        p, v, stage_id, form.direction.data or "", actor()))


@bp.post(f"{PREFIX}/<int:pipeline_id>/stages/<int:stage_id>/delete")
@login_required
def remove_stage(project_id: int, pipeline_id: int, stage_id: int):
    """Remove the stage; the answer offers Undo, which carries the removed stage signed (no row
    is kept for it: the form holds everything needed to put it back)."""
    removed: list[dict[str, Any]] = []
    response = _edit(project_id, pipeline_id, f"stage-{stage_id}", lambda p, v: removed.append(
        builder.remove_stage(p, v, stage_id, actor())), undo=removed)
    return response


@bp.post(f"{PREFIX}/<int:pipeline_id>/stages/restore")
@login_required
def restore_stage(project_id: int, pipeline_id: int):
    snapshot = _undone(pipeline_id)

    def restore(p: ReleasePipeline, v: Any) -> None:
        if snapshot is None:
            raise Invalid("Cannot undo.", {"stage": [
                "This removal can no longer be undone (it is older than an hour, or of "
                "another pipeline)."]})
        stage_edits.restore_stage(p, v, snapshot, actor())

    return _edit(project_id, pipeline_id, "new-stage", restore)


@bp.post(f"{PREFIX}/<int:pipeline_id>/stages/order")
@login_required
def reorder_stages(project_id: int, pipeline_id: int):
    """Drag and drop (or the keyboard) sends the whole new order once."""
    order = request.form.getlist("order")
    return _edit(project_id, pipeline_id, "stage-order",
                 lambda p, v: stage_edits.reorder_stages(p, v, order, actor()))


# Undo is offered for an hour after the removal: long enough to notice, short enough that a
# stale tab does not resurrect a stage someone forgot.
UNDO_SECONDS = 3600


def _undo_serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="stage-undo")


def _undo_offer(pipeline_id: int, token: str) -> tuple[str, str] | None:
    """(token, the removed stage's name) for the Undo banner, if the token still holds."""
    stage = _undone(pipeline_id, token) if token else None
    return (token, str(stage.get("name", ""))) if stage else None


def _undone(pipeline_id: int, token: str | None = None) -> dict[str, Any] | None:
    """The removed stage the Undo form carries, if its signature holds, it is recent and it was
    removed from this pipeline."""
    try:
        data = _undo_serializer().loads(
            token if token is not None else request.form.get("undo", ""), max_age=UNDO_SECONDS)
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("pipeline_id") != pipeline_id:
        return None
    return data.get("stage")


@bp.post(f"{PREFIX}/<int:pipeline_id>/stages/<int:stage_id>/actions")
@login_required
def add_action(project_id: int, pipeline_id: int, stage_id: int):
    form = ActionForm()
    return _edit(project_id, pipeline_id, f"new-action-{stage_id}",
                 lambda p, v: builder.add_action(p, v, stage_id, form.submitted(), actor()))


@bp.post(f"{PREFIX}/<int:pipeline_id>/actions/<int:action_id>")
@login_required
def update_action(project_id: int, pipeline_id: int, action_id: int):
    form = ActionForm()
    return _edit(project_id, pipeline_id, f"action-{action_id}",
                 lambda p, v: builder.update_action(p, v, action_id, form.submitted(), actor()))


@bp.post(f"{PREFIX}/<int:pipeline_id>/actions/<int:action_id>/move")
@login_required
def move_action(project_id: int, pipeline_id: int, action_id: int):
    form = MoveForm()
    return _edit(project_id, pipeline_id, f"action-{action_id}", lambda p, v: builder.move_action(
        p, v, action_id, form.direction.data or "", actor()))


@bp.post(f"{PREFIX}/<int:pipeline_id>/actions/<int:action_id>/delete")
@login_required
def remove_action(project_id: int, pipeline_id: int, action_id: int):
    return _edit(project_id, pipeline_id, f"action-{action_id}",
                 lambda p, v: builder.remove_action(p, v, action_id, actor()))


# --- health checks of a stage (issue 15): edited like actions ------------------------------------


@bp.post(f"{PREFIX}/<int:pipeline_id>/stages/<int:stage_id>/checks")
@login_required
def add_check(project_id: int, pipeline_id: int, stage_id: int):
    data = request.form.to_dict()
    return _edit(project_id, pipeline_id, f"new-check-{stage_id}",
                 lambda p, v: health_checks.add_check(p, v, stage_id, data, actor()))


@bp.post(f"{PREFIX}/<int:pipeline_id>/checks/<int:check_id>")
@login_required
def update_check(project_id: int, pipeline_id: int, check_id: int):
    data = request.form.to_dict()
    return _edit(project_id, pipeline_id, f"check-{check_id}",
                 lambda p, v: health_checks.update_check(p, v, check_id, data, actor()))


@bp.post(f"{PREFIX}/<int:pipeline_id>/checks/<int:check_id>/delete")
@login_required
def remove_check(project_id: int, pipeline_id: int, check_id: int):
    return _edit(project_id, pipeline_id, f"check-{check_id}",
                 lambda p, v: health_checks.remove_check(p, v, check_id, actor()))


@bp.post(f"{PREFIX}/<int:pipeline_id>/stages/<int:stage_id>/on-unhealthy")
@login_required
def set_on_unhealthy(project_id: int, pipeline_id: int, stage_id: int):
    value = request.form.get("on_unhealthy", "")
    return _edit(project_id, pipeline_id, f"unhealthy-{stage_id}",
                 lambda p, v: health_checks.set_on_unhealthy(p, v, stage_id, value, actor()))


def _edit(project_id: int, pipeline_id: int, key: str,
          change: Callable[[ReleasePipeline, Any], Any], *,
          undo: list[dict[str, Any]] | None = None):
    """Run one draft edit, then answer with the builder: 200 (303 without htmx) when saved,
    422 with the errors beside the form `key`, 409 with the current state and the reason.
    `undo` receives a removed stage's snapshot: the answer then offers to put it back."""
    project = project_or_404(project_id, "editor")
    pipeline = catalog.find_pipeline(project.id, pipeline_id)  # the service loads it whole
    try:
        change(pipeline, VersionForm().version.data)
    except Invalid as error:
        return _render_builder(project, pipeline_id, 422, errors={key: error.field_errors},
                               submitted={key: request.form.to_dict()})
    except Conflict as error:
        return _render_builder(project, pipeline_id, 409, notice=error.message)
    token = (_undo_serializer().dumps({"pipeline_id": pipeline_id, "stage": undo[0]})
             if undo else "")
    if not wants_fragment():
        anchor = key if key.startswith(("stage-", "action-", "check-")) and not undo else "stages"
        args = {"undo": token} if token else {}
        return redirect(url_for("pipelines.detail", project_id=project.id,
                                pipeline_id=pipeline_id, _anchor=anchor, **args), 303)
    return _render_builder(project, pipeline_id, undo=token)


def _render_builder(project: Project, pipeline_id: int, status: int = 200, *,
                    errors: dict | None = None, submitted: dict | None = None,
                    notice: str | None = None, open_key: str = "", undo: str = ""):
    pipeline = catalog.get_pipeline(project.id, pipeline_id)
    editable = pipeline.is_draft and can("editor")
    in_flight = 0 if pipeline.is_draft else catalog.in_flight_count(pipeline.id)
    context: dict[str, Any] = {
        "project": project,
        "pipeline": pipeline,
        "timeline": timeline.preview(pipeline.stages),
        "calendar_timeline": calendar_plans.pipeline_plan(pipeline.stages),
        "editable": editable,
        "can_edit": can("editor"),
        "in_flight": in_flight,
        "blocked": _blocked(in_flight),
        "problems": builder.publish_problems(pipeline) if pipeline.is_draft else [],
        "issues": {stage.id: stage_edits.stage_issues(stage) for stage in pipeline.stages},
        "undo": _undo_offer(pipeline.id, undo) if editable else None,
        "default_wait": stage_edits.wait_parts_default(),
        "max_stages": MAX_STAGES,
        "svc": describe,
        "checks_svc": check_inputs,
        "runs_panel": "runs.pipeline_panel" in current_app.view_functions,
        "notice": notice,
        "open_key": open_key,
        "f": BuilderState(errors, submitted),
        "urls": {"base": url_for("pipelines.detail", project_id=project.id,
                                 pipeline_id=pipeline.id)},
    }
    if editable:
        context.update(
            environment_options=[(str(e.id), e.name) for e in projects.environments_of(project.id)],
            segment_options=[(str(s.id), s.name) for s in catalog.segment_choices(project.id)],
            action_labels=describe.ACTION_LABELS,
            # Every builder form carries the token (no-JS posts) and the version it edits.
            hidden=Markup('<input type="hidden" name="csrf_token" value="{}">'
                          '<input type="hidden" name="version" value="{}">').format(
                generate_csrf(), pipeline.version),
        )
    return render("pipelines/detail.html", "builder", status=status, **context)


# --- publish, unpublish, clone, delete ---------------------------------------------------------


@bp.route(f"{PREFIX}/<int:pipeline_id>/publish", methods=["GET", "POST"])
@login_required
def publish(project_id: int, pipeline_id: int):
    project = project_or_404(project_id, "editor")
    pipeline = catalog.get_pipeline(project.id, pipeline_id)
    status, notice, problems = 200, None, []
    if request.method == "POST":
        try:
            builder.publish_pipeline(pipeline, VersionForm().version.data, actor())
        except Invalid as error:
            status, problems = 422, error.field_errors.get("publish", [error.message])
        except Conflict as error:
            status, notice = 409, error.message
        else:
            return location(url_for("pipelines.detail", project_id=project.id,
                                    pipeline_id=pipeline_id))
        pipeline = catalog.get_pipeline(project.id, pipeline_id)
    elif not pipeline.is_draft:
        status, notice = 409, "This pipeline is already published."
    else:
        problems = builder.publish_problems(pipeline)
    return render("pipelines/publish.html", "publish_confirm", status=status, project=project,
                  pipeline=pipeline, timeline=timeline.preview(pipeline.stages), problems=problems,
                  calendar_timeline=calendar_plans.pipeline_plan(pipeline.stages),
                  notice=notice, svc=describe)


@bp.route(f"{PREFIX}/<int:pipeline_id>/unpublish", methods=["GET", "POST"])
@login_required
def unpublish(project_id: int, pipeline_id: int):
    return _confirm(project_id, pipeline_id, "unpublish", builder.unpublish_pipeline,
                    title="Turn back into a draft",
                    question="Turn “{name}” back into a draft? It can then be edited, and no flag "
                             "can be added to it until it is published again.",
                    button="Unpublish", done="detail")


@bp.route(f"{PREFIX}/<int:pipeline_id>/delete", methods=["GET", "POST"])
@login_required
def delete(project_id: int, pipeline_id: int):
    return _confirm(project_id, pipeline_id, "delete", builder.delete_pipeline,
                    title="Delete pipeline",
                    question="Delete “{name}”? It disappears from the list; the audit log keeps "
                             "its history.",
                    button="Delete pipeline", done="index")


def _confirm(project_id: int, pipeline_id: int, endpoint: str, service: Callable, *, title: str,
             question: str, button: str, done: str):
    project = project_or_404(project_id, "editor")
    pipeline = catalog.get_pipeline(project.id, pipeline_id)
    status, notice = 200, None
    # Said before any click: a confirmation that can only fail is not offered.
    blocked = _blocked(catalog.in_flight_count(pipeline.id))
    if endpoint == "unpublish" and pipeline.is_draft:
        blocked = "This pipeline is a draft already: there is nothing to unpublish."
    if request.method == "POST":
        try:
            service(pipeline, actor())
        except Conflict as error:
            status, notice = 409, error.message
            pipeline = catalog.get_pipeline(project.id, pipeline_id)
            blocked = notice
        else:
            args = {"project_id": project.id}
            if done != "index":
                args["pipeline_id"] = pipeline_id
            target = url_for(f"pipelines.{done}", **args)
            return location(target)
    return render("pipelines/confirm.html", "confirm", status=status, project=project,
                  pipeline=pipeline, title=title, question=question.format(name=pipeline.name),
                  button=button, notice=notice, blocked=blocked,
                  action=url_for(f"pipelines.{endpoint}", project_id=project.id,
                                 pipeline_id=pipeline_id))


@bp.route(f"{PREFIX}/<int:pipeline_id>/clone", methods=["GET", "POST"])
@login_required
def clone(project_id: int, pipeline_id: int):
    project = project_or_404(project_id, "editor")
    pipeline = catalog.get_pipeline(project.id, pipeline_id)
    form = CloneForm()
    status = 200
    if request.method == "GET":
        form.name.data = fit(ReleasePipeline.name, f"{pipeline.name} (copy)")
    elif form.validate_on_submit():
        try:
            copy = builder.clone_pipeline(pipeline, actor(), form.name.data)
        except Invalid as error:
            _attach(form, error)
        else:
            return location(url_for("pipelines.detail", project_id=project.id, pipeline_id=copy.id))
        status = 422
    else:
        status = 422
    return render("pipelines/clone.html", "clone_form", status=status, project=project,
                  pipeline=pipeline, form=form)


def _blocked(in_flight: int) -> str:
    """Why Unpublish and Delete are unavailable, or "" when they are available."""
    if not in_flight:
        return ""
    flags = f"{in_flight} flag{'s are' if in_flight != 1 else ' is'}"
    done = "they have" if in_flight != 1 else "it has"
    return (f"{flags} in flight in this pipeline: unpublish or delete it once {done} "
            "launched or been removed.")


def _attach(form, error: Invalid) -> None:
    for field, messages in error.field_errors.items():
        getattr(form, field).errors = list(getattr(form, field).errors) + messages
