"""Segments: the list, the create/edit page with the HTMX rule builder, delete.

The builder's buttons (add or remove a rule or condition) post the whole form to `builder`,
which answers the rebuilt builder without saving; Save posts to `create` / `detail`.
"""

from typing import Any

from flask import Blueprint, current_app, redirect, request, url_for
from flask_login import login_required

from webapp.forms.flags import ConfirmForm
from webapp.forms.segments import SegmentForm, apply_builder_op, rules_from_form, starter_rules
from webapp.htmx import location, render, wants_fragment
from webapp.models import Project, Segment
from webapp.services.errors import Conflict, Invalid
from webapp.services.platform import segments
from webapp.views.context import actor, can, project_or_404

bp = Blueprint("segments", __name__)
PREFIX = "/projects/<int:project_id>/segments"
RULE_LABELS = {
    "ALL": "All of these match", "ANY": "Any of these matches", "NONE": "None of these matches"
}


@bp.get(PREFIX)
@login_required
def index(project_id: int):
    project = project_or_404(project_id)
    return render("segments/index.html", "segment_list", project=project,
                  segments=segments.list_segments(project.id), can_edit=can("editor"))


@bp.route(f"{PREFIX}/new", methods=["GET", "POST"])
@login_required
def create(project_id: int):
    project = project_or_404(project_id, "editor")
    form = SegmentForm()
    if request.method == "GET":
        return _render_edit(project, None, form, starter_rules())
    rules = rules_from_form(request.form)
    try:
        segment = segments.create_segment(project, form.name.data or "", rules, actor(),
                                          description=form.description.data or "")
    except Invalid as error:
        return _render_edit(project, None, form, rules, errors=error.field_errors, status=422)
    return location(url_for("segments.detail", project_id=project.id, segment_id=segment.id))


@bp.route(f"{PREFIX}/<int:segment_id>", methods=["GET", "POST"])
@login_required
def detail(project_id: int, segment_id: int):
    project = project_or_404(project_id, "editor" if request.method == "POST" else "viewer")
    segment = segments.get_segment(project.id, segment_id)
    if request.method == "GET":
        form = SegmentForm(formdata=None, name=segment.name, description=segment.description)
        return _render_edit(project, segment, form, segment.rules)
    form = SegmentForm()
    rules = rules_from_form(request.form)
    try:
        segments.update_segment(segment, actor(), name=form.name.data or "",
                                description=form.description.data or "", rules=rules)
    except Invalid as error:
        return _render_edit(project, segment, form, rules, errors=error.field_errors, status=422)
    url = url_for("segments.detail", project_id=project.id, segment_id=segment.id)
    if not wants_fragment():
        return redirect(url, 303)
    return _render_edit(project, segment, SegmentForm(formdata=None, name=segment.name,
                                                      description=segment.description),
                        segment.rules, saved=True)


@bp.post(f"{PREFIX}/new/builder", defaults={"segment_id": None}, endpoint="builder_new")
@bp.post(f"{PREFIX}/<int:segment_id>/builder")
@login_required
def builder(project_id: int, segment_id: int | None):
    """One unsaved edit of the rule tree: answers the builder (the whole page without htmx)."""
    project = project_or_404(project_id, "editor")
    segment = segments.get_segment(project.id, segment_id) if segment_id is not None else None
    rules = apply_builder_op(rules_from_form(request.form), request.form.get("op", ""))
    return _render_edit(project, segment, SegmentForm(), rules, block="rule_builder", dirty=True)


@bp.route(f"{PREFIX}/<int:segment_id>/delete", methods=["GET", "POST"])
@login_required
def delete(project_id: int, segment_id: int):
    project = project_or_404(project_id, "editor")
    segment = segments.get_segment(project.id, segment_id)
    status, notice = 200, segments.delete_refusal(segment)
    if request.method == "POST":
        try:
            segments.delete_segment(segment, actor())
        except Conflict as error:
            status, notice = 409, error.message
        else:
            return location(url_for("segments.index", project_id=project.id))
    return render("segments/delete.html", "delete_form", status=status, project=project,
                  segment=segment, form=ConfirmForm(), notice=notice,
                  overrides=segments.override_count(segment.id))


def _render_edit(project: Project, segment: Segment | None, form: SegmentForm, rules: list[Any], *,
                 block: str = "segment_form", status: int = 200, errors: dict | None = None,
                 **extra: Any):
    if segment is None:
        save_url = url_for("segments.create", project_id=project.id)
        builder_url = url_for("segments.builder_new", project_id=project.id)
    else:
        save_url = url_for("segments.detail", project_id=project.id, segment_id=segment.id)
        builder_url = url_for("segments.builder", project_id=project.id, segment_id=segment.id)
    errors = errors or {}
    for name in ("name", "description"):
        if name in errors:
            getattr(form, name).errors = list(errors[name])
    context = {
        "project": project, "segment": segment, "form": form, "rules": rules, "errors": errors,
        "save_url": save_url, "builder_url": builder_url, "operators": segments.OPERATORS,
        "rule_types": segments.RULE_TYPES, "rule_labels": RULE_LABELS,
        "no_value": segments.NO_VALUE_OPERATORS, "can_edit": can("editor"),
        "pipelines": segments.pipelines_using(segment.id) if segment else [],
        "pipeline_link": "pipelines.detail" in current_app.view_functions,
        "overrides": segments.override_count(segment.id) if segment else 0,
        "saved": False, "dirty": False,
    }
    context.update(extra)
    return render("segments/edit.html", block, status=status, **context)
