"""Change requests: the project's list (open / committed / rejected tabs, filters in the URL) and
a request's page (the exact diff, who asked, reviews, history) with approve, reject, commit,
re-open and close.

Every action answers the request's `change_request` block: 200 with the new state, or the
error's status (403, 409, 422) with why, nothing changed. A commit rings the run's bell after
the service committed (views enqueue, services never do).
"""

from flask import Blueprint, current_app, g, redirect, request, url_for
from flask_login import current_user, login_required

from jobs import outbox, transitions
from webapp.extensions import db
from webapp.forms.change_requests import TABS, ActionForm, CommitForm, FilterForm, ReviewForm
from webapp.htmx import render, wants_fragment
from webapp.models import Project
from webapp.services.change_requests import workflow
from webapp.services.errors import DomainError, Invalid
from webapp.services.governance import audit_log
from webapp.services.pages import calendar_holds, change_request_pages, live
from webapp.services.platform import projects
from webapp.services.platform.values import show
from webapp.views.context import actor, can, project_or_404

bp = Blueprint("change_requests", __name__)
PREFIX = "/projects/<int:project_id>/change-requests"
ONE = f"{PREFIX}/<int:request_id>"


@bp.get(PREFIX)
@login_required
def index(project_id: int):
    project = project_or_404(project_id)
    form = FilterForm(formdata=request.args).offer(
        projects.environments_of(project.id), change_request_pages.flags_with_requests(project.id))
    context = {"project": project, "form": form, "tabs": TABS,
               "counts": change_request_pages.counts_by_status(project.id), "rows": None,
               "filter_args": {}}
    if not form.validate():
        return render("change_requests/index.html", "change_request_list", status=422, **context)
    context["filter_args"] = form.query_args()
    environment_id = int(form.environment.data) if form.environment.data else None
    feature_id = int(form.flag.data) if form.flag.data else None
    context["rows"] = change_request_pages.list_requests(
        project.id, status=form.status.data or "open", environment_id=environment_id,
        feature_id=feature_id)
    context["counts"] = change_request_pages.counts_by_status(
        project.id, environment_id=environment_id, feature_id=feature_id)
    return render("change_requests/index.html", "change_request_list", **context)


@bp.get(ONE)
@login_required
def detail(project_id: int, request_id: int):
    project = project_or_404(project_id)
    return _render_detail(project, request_id)


@bp.post(f"{ONE}/approve")
@login_required
def approve(project_id: int, request_id: int):
    return _review(project_id, request_id, workflow.approve)


@bp.post(f"{ONE}/reject")
@login_required
def reject(project_id: int, request_id: int):
    return _review(project_id, request_id, workflow.reject)


@bp.post(f"{ONE}/commit")
@login_required
def commit(project_id: int, request_id: int):
    project = project_or_404(project_id, "editor")
    form = CommitForm()
    if not form.validate():
        return _render_detail(project, request_id, commit_form=form, status=422)
    try:
        bell = workflow.commit(project.id, request_id, actor(),
                               break_glass_reason=(form.break_glass_reason.data or "").strip()
                               or None)
    except DomainError as error:
        return _refused(project, request_id, error, commit_form=form)
    if bell is not None:
        transitions.ring([bell])
    outbox.ring()
    return _done(project, request_id, f"Change request #{request_id} committed: the changes "
                                      "are applied.")


@bp.post(f"{ONE}/reopen")
@login_required
def reopen(project_id: int, request_id: int):
    project = project_or_404(project_id, "editor")
    ActionForm()
    try:
        workflow.reopen(project.id, request_id, actor())
    except DomainError as error:
        return _refused(project, request_id, error)
    outbox.ring()
    return _done(project, request_id, f"Change request #{request_id} is open again.")


@bp.post(f"{ONE}/close")
@login_required
def close(project_id: int, request_id: int):
    project = project_or_404(project_id, "editor")
    ActionForm()
    try:
        workflow.close(project.id, request_id, actor())
    except DomainError as error:
        return _refused(project, request_id, error)
    return _done(project, request_id, f"Change request #{request_id} closed.")


REASON_REQUIRED = "Say why you reject it: the requester reads this, and the audit log keeps it."


def _review(project_id: int, request_id: int, use_case):
    project = project_or_404(project_id, "editor")
    form = ReviewForm()
    if not form.validate():
        return _render_detail(project, request_id, review_form=form, status=422)
    if use_case is workflow.reject and not (form.comment.data or "").strip():
        # A rejection halts the flag: the requester and the audit log need the reason.
        form.comment.errors = [*form.comment.errors, REASON_REQUIRED]
        return _render_detail(project, request_id, review_form=form, status=422)
    try:
        use_case(project.id, request_id, actor(), seen_hash=form.changes_hash.data or None,
                 comment=form.comment.data or "")
    except Invalid as error:
        for message in error.field_errors.get("comment", [error.message]):
            form.comment.errors = [*form.comment.errors, message]
        return _render_detail(project, request_id, review_form=form, status=422)
    except DomainError as error:
        return _refused(project, request_id, error)
    outbox.ring()
    verb = "approved" if use_case is workflow.approve else "rejected"
    return _done(project, request_id, f"You {verb} change request #{request_id}.")


def _refused(project: Project, request_id: int, error: DomainError,
             commit_form: CommitForm | None = None):
    if error.status_code == 404:
        raise error
    return _render_detail(project, request_id, status=error.status_code, notice=error.message,
                          commit_form=commit_form)


def _done(project: Project, request_id: int, message: str):
    if not wants_fragment():
        return redirect(url_for("change_requests.detail", project_id=project.id,
                                request_id=request_id), 303)
    return _render_detail(project, request_id, done=message)


def _render_detail(project: Project, request_id: int, *, status: int = 200,
                   review_form: ReviewForm | None = None, notice: str | None = None,
                   done: str | None = None, commit_form: CommitForm | None = None):
    detail = change_request_pages.get_detail(project.id, request_id)
    held = (calendar_holds.commit_hold(detail.request.environment_id, actor())
            if detail.request.status == "open" else None)
    review_form = review_form or ReviewForm(formdata=None)
    review_form.changes_hash.data = detail.request.changes_hash
    return render("change_requests/detail.html", "change_request", status=status,
                  project=project, d=detail, review_form=review_form, action_form=ActionForm(),
                  commit_form=commit_form or CommitForm(formdata=None), held=held,
                  refusal=change_request_pages.may_review(detail, current_user, g.get("role")),
                  can_edit=can("editor"), notice=notice, done=done, show=show,
                  history_words=audit_log.words(project.id, detail.history),
                  pipeline_link="pipelines.detail" in current_app.view_functions)


# --- Several requests of one stage ----------------------------------------------------------------


@bp.route(f"{PREFIX}/stage/<int:stage_id>", methods=["GET", "POST"])
@login_required
def batch(project_id: int, stage_id: int):
    """Approve several open requests of one pipeline stage at once: each checked request is
    approved through the same use case as its own page, bound to the changes (hash) shown."""
    project = project_or_404(project_id)
    results: list[tuple[int, str, bool]] = []
    status = 200
    if request.method == "POST":
        project_or_404(project_id, "editor")
        ActionForm()
        for raw in request.form.getlist("request"):
            request_id, _, seen = raw.partition(":")
            if not request_id.isdigit() or len(request_id) > 12 or not seen:
                return _render_batch(project, stage_id, results, status=400,
                                     notice="Unreadable selection.")
            try:
                workflow.approve(project.id, int(request_id), actor(), seen_hash=seen)
            except DomainError as error:
                db.session.rollback()
                results.append((int(request_id), error.message, False))
                status = 409
            else:
                results.append((int(request_id), "approved", True))
        if not results:
            return _render_batch(project, stage_id, results, status=422,
                                 notice="Choose at least one change request to approve.")
        outbox.ring()
    return _render_batch(project, stage_id, results, status=status)


def _render_batch(project: Project, stage_id: int, results, *, status: int = 200,
                  notice: str | None = None):
    rows = live.stage_requests(project.id, stage_id)
    return render("change_requests/batch.html", "stage_requests", status=status,
                  project=project, stage_id=stage_id, rows=rows, results=results,
                  notice=notice, can_edit=can("editor"), user_id=current_user.id,
                  action_form=ActionForm())
