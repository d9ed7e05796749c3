"""The projects a user can see, creating projects (site admins), and a project's settings
(project admins): environments with their keys and approvals rule, members and roles."""

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, current_app, redirect, request, url_for
from flask_login import current_user, login_required

from webapp.forms.projects import ProjectForm
from webapp.forms.settings import (
    ROLE_CHOICES,
    EnvironmentForm,
    MemberForm,
    NewEnvironmentForm,
    RoleForm,
    RotateForm,
)
from webapp.htmx import location, render, wants_fragment
from webapp.models import Project
from webapp.services.errors import Conflict, Invalid
from webapp.services.platform import access, environments, members, projects
from webapp.services.runs import alerts
from webapp.views.context import PROJECT_NAV, actor, project_or_404

bp = Blueprint("projects", __name__)


@bp.get("/")
@login_required
def index():
    return render("projects/index.html", "project_list",
                  projects=access.visible_projects(current_user), form=ProjectForm())


@bp.post("/projects")
@login_required
def create():
    if not current_user.is_site_admin:
        abort(403, "Only site administrators create projects.")
    form = ProjectForm()
    if form.validate_on_submit():
        try:
            project = projects.create_project(form.name.data, actor())
        except Invalid as error:
            for field, messages in error.field_errors.items():
                getattr(form, field).errors.extend(messages)
        else:
            return location(url_for("projects.home", project_id=project.id))
    return render("projects/index.html", "project_form", status=422,
                  projects=access.visible_projects(current_user), form=form)


@bp.get("/projects/<int:project_id>")
@login_required
def home(project_id: int):
    project_or_404(project_id)
    endpoint = next((ep for _label, ep in PROJECT_NAV if ep in current_app.view_functions), None)
    if endpoint is None:
        return redirect(url_for("projects.index"))
    return redirect(url_for(endpoint, project_id=project_id))


# --- project settings (admins): environments and members ---------------------------------------

SETTINGS = "/projects/<int:project_id>/settings"


@bp.get(SETTINGS)
@login_required
def settings(project_id: int):
    project = project_or_404(project_id, "admin")
    return _render_settings(project, "settings_page")


@bp.post(f"{SETTINGS}/environments")
@login_required
def add_environment(project_id: int):
    project = project_or_404(project_id, "admin")
    form = NewEnvironmentForm()
    return _settings_change(
        project, "environment_list", "env-new",
        lambda: projects.add_environment(project, form.name.data or "", actor()))


@bp.post(f"{SETTINGS}/environments/<int:environment_id>")
@login_required
def update_environment(project_id: int, environment_id: int):
    project = project_or_404(project_id, "admin")
    env = environments.get_environment(project.id, environment_id)
    form = EnvironmentForm()
    return _settings_change(project, "environment_list", f"env-{env.id}",
                            lambda: environments.update_environment(
                                env, actor(), name=form.name.data or "",
                                approvals=form.approvals.data or ""))


@bp.post(f"{SETTINGS}/environments/<int:environment_id>/rotate")
@login_required
def rotate_key(project_id: int, environment_id: int):
    project = project_or_404(project_id, "admin")
    env = environments.get_environment(project.id, environment_id)
    form = RotateForm()
    return _settings_change(project, "environment_list", f"env-{env.id}",
                            lambda: environments.rotate_key(env, form.kind.data or "", actor()))


@bp.post(f"{SETTINGS}/members")
@login_required
def add_member(project_id: int):
    project = project_or_404(project_id, "admin")
    form = MemberForm()
    return _settings_change(
        project, "member_list", "member-new",
        lambda: members.add_member_by_email(
            project, form.email.data or "", form.role.data or "", actor()))


@bp.post(f"{SETTINGS}/members/<int:membership_id>")
@login_required
def change_role(project_id: int, membership_id: int):
    project = project_or_404(project_id, "admin")
    membership = members.get_membership(project.id, membership_id)
    form = RoleForm()
    return _settings_change(project, "member_list", f"member-{membership.id}",
                            lambda: members.change_role(membership, form.role.data or "", actor()))


@bp.post(f"{SETTINGS}/members/<int:membership_id>/remove")
@login_required
def remove_member(project_id: int, membership_id: int):
    project = project_or_404(project_id, "admin")
    membership = members.get_membership(project.id, membership_id)
    return _settings_change(project, "member_list", f"member-{membership.id}",
                            lambda: members.remove_member(membership, actor()))


@bp.post(f"{SETTINGS}/integrations")
@login_required
def update_integrations(project_id: int):
    project = project_or_404(project_id, "admin")
    return _settings_change(project, "integration_settings", "integrations",
                            lambda: alerts.update_integrations(
                                project, request.form.to_dict(), actor()))


def _settings_change(project: Project, block: str, key: str, change: Callable[[], Any]):
    """Run one settings change; answer its section: 200 (303 without htmx), 422 with the
    errors beside the form `key`, 409 with why it was refused."""
    try:
        change()
    except Invalid as error:
        return _render_settings(project, block, 422, errors={key: error.field_errors},
                                submitted={key: request.form.to_dict()})
    except Conflict as error:
        return _render_settings(project, block, 409, notices={block: error.message})
    if not wants_fragment():
        return redirect(url_for("projects.settings", project_id=project.id, _anchor=block), 303)
    return _render_settings(project, block)


def _render_settings(project: Project, block: str, status: int = 200, **extra: Any):
    context: dict[str, Any] = {
        "project": project,
        "environments": projects.environments_of(project.id),
        "memberships": members.list_members(project.id),
        "integration": alerts.integration(project.id),
        "roles": ROLE_CHOICES,
        # Site admins create accounts: the members form links them to "New user" (filled in).
        "creates_users": current_user.is_site_admin,
        "errors": {},
        "submitted": {},
        "notices": {},
    }
    context.update(extra)
    return render("projects/settings.html", block, status=status, **context)
