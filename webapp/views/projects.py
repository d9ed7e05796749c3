"""The projects a user can see, and creating projects (site admins)."""

from flask import Blueprint, abort, current_app, redirect, url_for
from flask_login import current_user, login_required

from webapp.forms.projects import ProjectForm
from webapp.htmx import location, render
from webapp.services import access, projects
from webapp.services.errors import Invalid
from webapp.views.context import actor, project_or_404

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
    from webapp.views import PROJECT_NAV

    endpoint = next((ep for _label, ep in PROJECT_NAV if ep in current_app.view_functions), None)
    if endpoint is None:
        return redirect(url_for("projects.index"))
    return redirect(url_for(endpoint, project_id=project_id))
