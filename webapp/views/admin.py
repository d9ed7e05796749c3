"""Site administration: the users of this Railyard (site admins only)."""

from flask import Blueprint, abort, redirect, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.forms.admin import UserForm
from webapp.htmx import render, wants_fragment
from webapp.models import ROLES, Project, User
from webapp.parsing import ascii_int
from webapp.services.errors import Conflict, Invalid
from webapp.services.platform import members
from webapp.services.platform import users as accounts
from webapp.views.context import actor

bp = Blueprint("admin", __name__)


def _site_admin_only() -> None:
    if not current_user.is_site_admin:
        abort(403, "Only site administrators manage users.")


@bp.get("/admin/users")
@login_required
def users():
    """The users, and a form for a new one. `?email=...&project=<id>&role=...` (the project
    members page's link) fills the form in: that person, given that role there."""
    _site_admin_only()
    form = UserForm(formdata=None, email=request.args.get("email", "")[:320])
    project_id = ascii_int(request.args.get("project"))
    role = request.args.get("role", "editor")
    roles = {project_id: role if role in ROLES else "editor"} if project_id else {}
    return _render(form, roles=roles)


@bp.post("/admin/users")
@login_required
def create_user():
    _site_admin_only()
    form = UserForm()
    roles = _roles_chosen()
    try:
        added = members.create_user_in_projects(
            form.email.data or "", form.password.data or "", name=form.name.data or "",
            site_admin=bool(form.site_admin.data), roles=roles, actor=actor())
    except Invalid as error:
        project_errors = list(error.field_errors.get("projects", []))
        for field, messages in error.field_errors.items():
            if field != "projects":
                getattr(form, field).errors = list(messages)
        return _render(form, status=422, roles=roles, project_errors=project_errors)
    if not wants_fragment():
        return redirect(url_for("admin.users"), 303)
    return _render(UserForm(formdata=None), created=form.email.data.strip().lower(),
                   added=[(project.name, role) for project, role in added])


def _roles_chosen() -> dict[int, str]:
    """{project id: role} from the form's "role-<project id>" selects ("" is no access)."""
    roles: dict[int, str] = {}
    for key, value in request.form.items():
        project_id = ascii_int(key.removeprefix("role-")) if key.startswith("role-") else None
        if project_id is not None and value:
            roles[project_id] = value[:16]
    return roles


@bp.post("/admin/users/<int:user_id>/remove")
@login_required
def remove_user(user_id: int):
    _site_admin_only()
    person = db.get_or_404(User, user_id)
    try:
        accounts.remove_user(person, actor())
    except Conflict as error:
        abort(409, str(error))
    if not wants_fragment():
        return redirect(url_for("admin.users"), 303)
    return _render(UserForm(formdata=None))


def _render(form: UserForm, status: int = 200, created: str | None = None, *,
            roles: dict[int, str] | None = None, project_errors: list[str] | None = None,
            added: list[tuple[str, str]] | None = None):
    people = list(db.session.scalars(select(User).order_by(func.lower(User.email))))
    every_project = list(db.session.scalars(select(Project).order_by(func.lower(Project.name))))
    return render("admin/users.html", "user_admin", status=status, form=form, people=people,
                  created=created, projects=every_project, roles=roles or {},
                  project_errors=project_errors or [], added=added or [], role_names=ROLES)
