"""Flags: the project's table of flags by environment (toggle a cell, create a flag) and a flag's
page (state and value per environment, segment overrides, description and tags, history,
delete).

Manual changes go through `webapp.services.platform.flags`, which refuses them while a release
pipeline owns the flag (409, the page says which pipeline).
"""

from typing import Any

from flask import Blueprint, current_app, redirect, request, url_for
from flask_login import login_required

from jobs import outbox
from webapp.forms.flags import (
    ConfirmForm,
    DetailsForm,
    FeatureForm,
    OverrideForm,
    ToggleForm,
    ValueForm,
)
from webapp.htmx import location, render, trigger, wants_fragment
from webapp.models import ChangeRequest, Feature, Project
from webapp.parsing import ascii_int
from webapp.services.change_requests import opening
from webapp.services.errors import Conflict, Invalid
from webapp.services.governance import audit_log
from webapp.services.pages import flag_table
from webapp.services.platform import analytics, flag_changes, flags, projects, segments
from webapp.services.platform.values import show
from webapp.views.context import actor, can, project_or_404

bp = Blueprint("flags", __name__)
PREFIX = "/projects/<int:project_id>/flags"
STATE = f"{PREFIX}/<int:feature_id>/environments/<int:environment_id>"


def _attach(form, error: Invalid) -> None:
    for field, messages in error.field_errors.items():
        target = getattr(form, field, None)
        if target is not None:
            target.errors = list(target.errors) + messages
        else:
            form.form_errors.extend(messages)


# --- the flags table ----------------------------------------------------------------------------


@bp.get(PREFIX)
@login_required
def index(project_id: int):
    project = project_or_404(project_id)
    return _render_index(project, FeatureForm())


@bp.post(PREFIX)
@login_required
def create(project_id: int):
    project = project_or_404(project_id, "editor")
    form = FeatureForm()
    if form.validate_on_submit():
        try:
            feature = flags.create_feature(
                project, form.name.data, actor(), description=form.description.data or "",
                value_type=form.value_type.data, default_enabled=form.default_enabled.data,
                default_value=form.default_value.data)
        except Invalid as error:
            _attach(form, error)
        else:
            return location(url_for("flags.index", project_id=project.id,
                                    _anchor=f"flag-{feature.id}"))
    return _render_index(project, form, block="flag_form", status=422)


def _render_index(
    project: Project, form: FeatureForm, block: str = "flag_table", status: int = 200
):
    environments = projects.environments_of(project.id)
    listing = flag_table.flag_page(project.id, environments,
                              page=ascii_int(request.args.get("page"), below=10**6) or 1,
                              query=request.args.get("q", "").strip()[:255])
    return render("flags/index.html", block, status=status, project=project, form=form,
                  environments=environments, listing=listing, rows=listing.rows,
                  in_flight=flags.pipelines_in_flight(project.id), can_edit=can("editor"),
                  show=show, **_pipeline_links())


def _pipeline_links() -> dict[str, Any]:
    return {"pipeline_link": "pipelines.detail" in current_app.view_functions,
            "audit_link": "audit.index" in current_app.view_functions}


@bp.post(f"{STATE}/toggle")
@login_required
def toggle(project_id: int, feature_id: int, environment_id: int):
    """Turn one cell on or off. From the table it answers the row; from the flag page, the
    environments section."""
    project = project_or_404(project_id, "editor")
    feature = flags.get_feature(project.id, feature_id)
    form = ToggleForm()
    on_detail = request.form.get("from") == "detail"
    if on_detail:
        return _detail_change(project, feature, lambda: opening.set_state(
            feature, environment_id, actor(), enabled=form.wanted))
    opened = opening.set_state(feature, environment_id, actor(), enabled=form.wanted)
    outbox.ring()
    if opened is not None:  # the environment needs approvals: show the new change request
        return _to_change_request(opened)
    if not wants_fragment():
        return redirect(
            url_for("flags.index", project_id=project.id, _anchor=f"flag-{feature.id}"), 303)
    environments = projects.environments_of(project.id)
    row = flag_table.flag_rows(project.id, environments, feature_ids=[feature.id])[0]
    return render("flags/_row.html", "flag_row", project=project, environments=environments,
                  row=row, in_flight=flags.pipelines_in_flight(project.id), can_edit=True,
                  show=show, **_pipeline_links())


# --- a flag's page ------------------------------------------------------------------------------


@bp.get(f"{PREFIX}/<int:feature_id>")
@login_required
def detail(project_id: int, feature_id: int):
    project = project_or_404(project_id)
    feature = flags.get_feature(project.id, feature_id)
    return _render_detail(project, feature, block="flag_page")


@bp.post(f"{STATE}/value")
@login_required
def set_value(project_id: int, feature_id: int, environment_id: int):
    project = project_or_404(project_id, "editor")
    feature = flags.get_feature(project.id, feature_id)
    form = ValueForm()
    return _detail_change(project, feature, lambda: opening.set_state(
        feature, environment_id, actor(), raw_value=form.value.data or ""),
        key=f"value-{environment_id}")


@bp.post(f"{STATE}/overrides")
@login_required
def add_override(project_id: int, feature_id: int, environment_id: int):
    project = project_or_404(project_id, "editor")
    feature = flags.get_feature(project.id, feature_id)
    form = OverrideForm()
    return _detail_change(project, feature, lambda: opening.save_override(
        feature, environment_id, _int(request.form.get("segment_id")), actor(),
        enabled=form.enabled.data, raw_value=form.value.data, priority=form.priority.data),
        key=f"override-new-{environment_id}")


@bp.post(f"{STATE}/overrides/<int:segment_id>")
@login_required
def edit_override(project_id: int, feature_id: int, environment_id: int, segment_id: int):
    project = project_or_404(project_id, "editor")
    feature = flags.get_feature(project.id, feature_id)
    form = OverrideForm()
    return _detail_change(project, feature, lambda: opening.save_override(
        feature, environment_id, segment_id, actor(), enabled=form.enabled.data,
        raw_value=form.value.data, priority=form.priority.data, must_exist=True),
        key=f"override-{environment_id}-{segment_id}")


@bp.post(f"{STATE}/overrides/<int:segment_id>/remove")
@login_required
def remove_override(project_id: int, feature_id: int, environment_id: int, segment_id: int):
    project = project_or_404(project_id, "editor")
    feature = flags.get_feature(project.id, feature_id)
    return _detail_change(project, feature, lambda: opening.remove_override(
        feature, environment_id, segment_id, actor()))


@bp.post(f"{PREFIX}/<int:feature_id>/details")
@login_required
def update_details(project_id: int, feature_id: int):
    project = project_or_404(project_id, "editor")
    feature = flags.get_feature(project.id, feature_id)
    form = DetailsForm()
    try:
        flags.update_details(feature, actor(), description=form.description.data or "",
                             tags=form.tags.data or "")
    except Invalid as error:
        return _render_detail(project, feature, block="flag_details", status=422,
                              errors={"details": error.field_errors},
                              submitted={"details": request.form.to_dict()})
    if not wants_fragment():
        return redirect(url_for("flags.detail", project_id=project.id, feature_id=feature.id), 303)
    return trigger(_render_detail(project, feature, block="flag_details"), "flag-changed")


@bp.route(f"{PREFIX}/<int:feature_id>/delete", methods=["GET", "POST"])
@login_required
def delete(project_id: int, feature_id: int):
    project = project_or_404(project_id, "editor")
    feature = flags.get_feature(project.id, feature_id)
    form = ConfirmForm()
    status, notice = 200, flags.delete_refusal(feature)
    if request.method == "POST":
        try:
            flags.delete_feature(feature, actor())
        except Conflict as error:
            status, notice = 409, error.message
        else:
            return location(url_for("flags.index", project_id=project.id))
    return render("flags/delete.html", "delete_form", status=status, project=project,
                  feature=feature, form=form, notice=notice)


def _to_change_request(opened: ChangeRequest):
    return location(url_for("change_requests.detail", project_id=opened.project_id,
                            request_id=opened.id))


def _int(raw: str | None) -> int | None:
    return ascii_int(raw)


def _detail_change(project: Project, feature: Feature, change, key: str | None = None):
    """Run one manual change from the flag page; answer the environments section: 200 (303
    without htmx), 422 with the errors beside the form `key`, 409 with why it was refused."""
    try:
        opened = change()
    except Invalid as error:
        return _render_detail(project, feature, block="flag_states", status=422,
                              errors={key or "form": error.field_errors},
                              submitted={key or "form": request.form.to_dict()})
    except Conflict as error:
        return _render_detail(project, feature, block="flag_states", status=409,
                              notice=error.message)
    outbox.ring()  # webhooks hear of the change (or of the change request it opened)
    if isinstance(opened, ChangeRequest):  # the environment needs approvals
        return _to_change_request(opened)
    if not wants_fragment():
        return redirect(url_for("flags.detail", project_id=project.id, feature_id=feature.id,
                                _anchor="flag_states"), 303)
    return trigger(_render_detail(project, feature, block="flag_states"), "flag-changed")


def _render_detail(project: Project, feature: Feature, block: str, status: int = 200, **extra: Any):
    environments = projects.environments_of(project.id)
    row = flag_table.flag_rows(project.id, environments, feature_ids=[feature.id])[0]
    run = flag_changes.active_run(feature.id)
    history = flags.history(feature.id)
    context: dict[str, Any] = {
        "project": project,
        "feature": feature,
        "environments": environments,
        "states": dict(zip([env.id for env in environments], row.states, strict=True)),
        "overrides": flags.overrides_of(feature.id),
        "segment_choices": segments.list_segments(project.id),
        "history": history,
        "history_words": audit_log.words(project.id, history),
        "evaluations": analytics.daily(feature.id, environments),
        "run": run,
        "can_edit": can("editor"),
        "locked": run is not None,
        "flag_panel": "runs.flag_panel" in current_app.view_functions,
        "details_form": DetailsForm(formdata=None, description=feature.description,
                                    tags=", ".join(feature.tags or [])),
        "show": show,
        "errors": {},
        "submitted": {},
        "notice": None,
        **_pipeline_links(),
    }
    context.update(extra)
    return render("flags/detail.html", block, status=status, **context)
