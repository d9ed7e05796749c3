"""Admin API: projects (`/api/v1/projects/`)."""

from flask import abort

from webapp.extensions import db
from webapp.models import Organisation, Project
from webapp.services.platform import api_auth, projects
from webapp.views.api import bp
from webapp.views.api.common import body, iso, operation, paginate_list, principal
from webapp.views.api.schemas import ProjectCreateSchema, ProjectSchema, page_schema


def serialize(project: Project) -> dict:
    return {"id": project.id, "name": project.name, "organisation": project.organisation_id,
            "created_date": iso(project.created_at)}


@bp.get("/projects/")
@operation("List the projects the key or token reaches", "projects",
           response=page_schema(ProjectSchema), paginated=True)
def list_projects():
    return paginate_list(api_auth.visible_projects(principal()), serialize)


@bp.post("/projects/")
@operation("Create a project (organisation keys, site administrators)", "projects",
           body=ProjectCreateSchema, response=ProjectSchema, status=201)
def create_project():
    who = principal()
    if not api_auth.can_create_projects(who):
        abort(403, "Only organisation keys and site administrators create projects.")
    data = body(ProjectCreateSchema)
    organisation_id = who.organisation_id or data["organisation"]
    if who.organisation_id and data["organisation"] not in (None, who.organisation_id):
        abort(404, "Organisation not found.")
    organisation = db.session.get(Organisation, organisation_id) if organisation_id else \
        projects.default_organisation()
    if organisation is None:
        abort(404, "Organisation not found.")
    project = projects.create_project(data["name"], who.actor, organisation=organisation)
    return serialize(project), 201


@bp.get("/projects/<int:project_id>/")
@operation("Read a project", "projects", response=ProjectSchema)
def get_project(project_id: int):
    return serialize(api_auth.project_for(principal(), project_id))


