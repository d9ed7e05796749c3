"""Flags in pipelines: the flag page's pipeline panel (track and controls, or "Add to release
pipeline"), the pipeline page's flags panel (flags per stage, add several), and the controls.

Services commit; then the view rings the bell (enqueues the advance) — a failed enqueue is
logged by the jobs layer and the sweeper picks the run up.
"""

from flask import Blueprint, current_app, url_for
from flask_login import login_required

from jobs import outbox, transitions
from webapp.extensions import db
from webapp.forms.runs import AddFlagsForm, AddToPipelineForm, RunActionForm
from webapp.htmx import location, render, trigger, wants_fragment
from webapp.models import Feature, PipelineRun, Project
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.pages import calendar_plans, flag_runs, track
from webapp.services.platform import flags
from webapp.services.runs import controls, flag_intake
from webapp.views.context import actor, can, project_or_404

bp = Blueprint("runs", __name__)
FLAG = "/projects/<int:project_id>/flags/<int:feature_id>/pipeline"
PIPELINE = "/projects/<int:project_id>/pipelines/<int:pipeline_id>/flags"
RUN = "/projects/<int:project_id>/runs/<int:run_id>"


def _feature_or_404(project: Project, feature_id: int) -> Feature:
    return flags.get_feature(project.id, feature_id)


def _flag_page_url(project_id: int, feature_id: int) -> str:
    if "flags.detail" in current_app.view_functions:
        return url_for("flags.detail", project_id=project_id, feature_id=feature_id)
    return url_for("runs.flag_panel", project_id=project_id, feature_id=feature_id)


def _pipeline_page_url(project_id: int, pipeline_id: int) -> str:
    if "pipelines.detail" in current_app.view_functions:
        return url_for("pipelines.detail", project_id=project_id, pipeline_id=pipeline_id)
    return url_for("runs.pipeline_panel", project_id=project_id, pipeline_id=pipeline_id)


# --- the flag's panel -----------------------------------------------------------------------------


def _render_flag(project: Project, feature: Feature, *, form=None, status: int = 200,
                 block: str = "run_panel", confirm: str | None = None):
    view = flag_runs.flag_run(project.id, feature.id)
    pipelines = (flag_intake.pipeline_choices(project.id, feature.value_type)
                 if view is None or not view.run.in_flight else [])
    if form is None:
        form = AddToPipelineForm(formdata=None)
    _offer(form, pipelines)
    in_flight = view is not None and view.run.in_flight
    response = render(
        "runs/flag.html", block, status=status, project=project, feature=feature, view=view,
        in_flight=in_flight, pipelines=pipelines, form=form, action_form=RunActionForm(),
        can_edit=can("editor"), confirm=confirm, time_left=flag_runs.time_left,
        pipeline_url=_pipeline_page_url, flag_url=_flag_page_url(project.id, feature.id),
        rollback_launched=view is not None and not in_flight and controls.can_roll_back(view.run),
        track=track.flag_track(project.id, feature.id, run_id=view.run.id) if view else None,
        plan=calendar_plans.flag_plan(view.run) if in_flight and view else None,
    )
    return response, in_flight


def _offer(form: AddToPipelineForm, choices: list[flag_intake.PipelineChoice]) -> None:
    """Pipelines the flag can join first; the others disabled, saying why (an on/off flag is
    never offered a pipeline that sets a text value)."""
    form.pipeline_id.choices = [
        (c.pipeline.id, c.pipeline.name if not c.reason
         else f"{c.pipeline.name} — cannot join: {c.reason}", {"disabled": bool(c.reason)})
        for c in choices]


@bp.get(FLAG)
@login_required
def flag_panel(project_id: int, feature_id: int):
    project = project_or_404(project_id)
    feature = _feature_or_404(project, feature_id)
    return _render_flag(project, feature)[0]


@bp.post(FLAG)
@login_required
def add_from_flag(project_id: int, feature_id: int):
    project = project_or_404(project_id, needs="editor")
    feature = _feature_or_404(project, feature_id)
    form = AddToPipelineForm()
    _offer(form, flag_intake.pipeline_choices(project.id, feature.value_type))
    if form.validate_on_submit():
        try:
            bell = controls.add_flag(project, form.pipeline_id.data, feature.id, actor())
        except (Invalid, Conflict, NotFound) as error:
            db.session.rollback()
            form.pipeline_id.errors = list(form.pipeline_id.errors) + [error.message]
        else:
            transitions.ring([bell])
            outbox.ring()
            return _after_change(project, feature.id)
    return _render_flag(project, feature, form=form, status=422)[0]


def _after_change(project: Project, feature_id: int):
    if not wants_fragment():
        return location(_flag_page_url(project.id, feature_id))
    feature = _feature_or_404(project, feature_id)
    return trigger(_render_flag(project, feature)[0], "flag-changed")


# --- controls -------------------------------------------------------------------------------------


def _run_or_404(project: Project, run_id: int) -> PipelineRun:
    return flag_runs.get_run(project.id, run_id)


def _control(project_id: int, run_id: int, use_case):
    project = project_or_404(project_id, needs="editor")
    run = _run_or_404(project, run_id)
    feature_id, pipeline_id = run.feature_id, run.pipeline_id
    form = RunActionForm(meta={"csrf": False})  # CSRFProtect checked the token already
    bell = use_case(project, run_id, actor())
    if bell is not None:
        transitions.ring([bell])
    outbox.ring()  # webhooks hear of holds, removals, rollbacks
    if form.panel.data == "pipeline":
        if not wants_fragment():
            return location(_pipeline_page_url(project.id, pipeline_id))
        return trigger(_render_pipeline(project, pipeline_id), "flag-changed")
    return _after_change(project, feature_id)


@bp.post(f"{RUN}/pause")
@login_required
def pause(project_id: int, run_id: int):
    return _control(project_id, run_id, controls.pause)


@bp.post(f"{RUN}/resume")
@login_required
def resume(project_id: int, run_id: int):
    return _control(project_id, run_id, controls.resume)


@bp.post(f"{RUN}/advance")
@login_required
def advance(project_id: int, run_id: int):
    return _control(project_id, run_id, controls.advance_now)


@bp.post(f"{RUN}/retry")
@login_required
def retry(project_id: int, run_id: int):
    return _control(project_id, run_id, controls.retry)


CONFIRMED = {"remove": controls.remove, "rollback": controls.rollback}


@bp.get(f"{RUN}/<any(remove, rollback):what>")
@login_required
def confirm(project_id: int, run_id: int, what: str):
    """The confirmation step of remove / roll back (the panel, asking)."""
    project = project_or_404(project_id, needs="editor")
    run = _run_or_404(project, run_id)
    feature = _feature_or_404(project, run.feature_id)
    return _render_flag(project, feature, confirm=what)[0]


@bp.post(f"{RUN}/<any(remove, rollback):what>")
@login_required
def confirmed(project_id: int, run_id: int, what: str):
    return _control(project_id, run_id, CONFIRMED[what])


# --- the pipeline's panel -------------------------------------------------------------------------


def _render_pipeline(project: Project, pipeline_id: int, *, form=None, status: int = 200,
                     report: flag_intake.AddReport | None = None):
    data = flag_runs.pipeline_flags(project.id, pipeline_id)
    choices = flag_intake.flag_choices(project.id, data.pipeline)
    if form is None:
        form = AddFlagsForm(formdata=None)
    return render(
        "runs/pipeline.html", "pipeline_runs", status=status, project=project, data=data,
        form=form, can_edit=can("editor"), time_left=flag_runs.time_left, choices=choices,
        report=report, report_oob=report is not None and wants_fragment(),
        flag_url=_flag_page_url,
        pipeline_url=_pipeline_page_url(project.id, pipeline_id),
        addable=data.pipeline.status == "published" and data.pipeline.deleted_at is None,
    )


@bp.get(PIPELINE)
@login_required
def pipeline_panel(project_id: int, pipeline_id: int):
    project = project_or_404(project_id)
    return _render_pipeline(project, pipeline_id)


@bp.post(PIPELINE)
@login_required
def add_from_pipeline(project_id: int, pipeline_id: int):
    """Add the checked flags: every one that can join is added, the others are listed with
    why (200 when any was added, else 422)."""
    project = project_or_404(project_id, needs="editor")
    form = AddFlagsForm()
    if form.validate_on_submit():
        try:
            report = flag_intake.add_flags(project, pipeline_id, form.feature_ids.data, actor())
        except (Invalid, Conflict) as error:
            db.session.rollback()
            form.feature_ids.errors = list(form.feature_ids.errors) + [error.message]
        else:
            transitions.ring(report.bells)
            outbox.ring()
            # The report is the answer, with or without htmx: the form posts to the panel's own
            # URL, so a full page here reads the same as after a redirect and keeps the report.
            response = _render_pipeline(project, pipeline_id, report=report,
                                        status=200 if report.added else 422)
            return trigger(response, "flag-changed") if report.added else response
    return _render_pipeline(project, pipeline_id, form=form, status=422)
