"""Admin API: environments (`/api/v1/environments/`), named by their client key as in
Flagsmith's admin API."""

from sqlalchemy import select

from webapp.models import Environment, ServerKey
from webapp.services.errors import Invalid
from webapp.services.platform import api_auth, environments, projects
from webapp.views.api import bp
from webapp.views.api.common import (
    body,
    int_arg,
    operation,
    paginate,
    principal,
    wire_errors,
)
from webapp.views.api.schemas import (
    EnvironmentCreateSchema,
    EnvironmentSchema,
    EnvironmentUpdateSchema,
    ServerKeyCreatedSchema,
    ServerKeyCreateSchema,
    ServerKeySchema,
    page_schema,
)


def serialize(env: Environment) -> dict:
    return {"id": env.id, "name": env.name, "api_key": env.client_key, "project": env.project_id,
            "minimum_change_request_approvals": env.minimum_change_request_approvals}


@bp.get("/environments/")
@operation("List a project's environments", "environments",
           response=page_schema(EnvironmentSchema), paginated=True,
           query={"project": {"type": "integer", "required": True}})
def list_environments():
    project_id = int_arg("project")
    if project_id is None:
        raise Invalid("Which project?", {"project": ["Required: ?project=<id>."]})
    project = api_auth.project_for(principal(), project_id)
    query = select(Environment).where(Environment.project_id == project.id) \
        .order_by(Environment.position, Environment.id)
    return paginate(query, serialize)


@bp.post("/environments/")
@operation("Create an environment (project admins)", "environments",
           body=EnvironmentCreateSchema, response=EnvironmentSchema, status=201)
def create_environment():
    data = body(EnvironmentCreateSchema)
    who = principal()
    project = api_auth.project_for(who, data["project"], needs="admin")
    env = projects.add_environment(project, data["name"], who.actor)
    return serialize(env), 201


@bp.get("/environments/<api_key>/")
@operation("Read an environment", "environments", response=EnvironmentSchema)
def get_environment(api_key: str):
    return serialize(api_auth.environment_for(principal(), api_key))


@bp.patch("/environments/<api_key>/")
@operation("Rename an environment or set the approvals its changes need (project admins)",
           "environments", body=EnvironmentUpdateSchema, response=EnvironmentSchema)
def update_environment(api_key: str):
    who = principal()
    env = api_auth.environment_for(who, api_key, needs="admin")
    data = body(EnvironmentUpdateSchema)
    approvals = data.get("minimum_change_request_approvals")
    with wire_errors({"approvals": "minimum_change_request_approvals"}):
        environments.update_environment(
            env, who.actor, name=data.get("name", env.name),
            approvals=env.minimum_change_request_approvals
            if "minimum_change_request_approvals" not in data else (approvals or 0))
    return serialize(env)


def _server_key(row: ServerKey) -> dict:
    return {"id": row.id, "name": row.name, "prefix": row.prefix, "active": True,
            "created_at": row.created_at.isoformat(), "expires_at": None}


@bp.get("/environments/<api_key>/api-keys/")
@operation("List an environment's server-side keys (project admins; prefixes only)",
           "environments", response=ServerKeySchema, many=True)
def list_server_keys(api_key: str):
    env = api_auth.environment_for(principal(), api_key, needs="admin")
    return [_server_key(row) for row in environments.server_keys(env)]


@bp.post("/environments/<api_key>/api-keys/")
@operation("Create a server-side key for local evaluation (project admins; the key is shown "
           "once)", "environments", body=ServerKeyCreateSchema, response=ServerKeyCreatedSchema,
           status=201)
def create_server_key(api_key: str):
    who = principal()
    env = api_auth.environment_for(who, api_key, needs="admin")
    data = body(ServerKeyCreateSchema)
    row, secret = environments.create_server_key(env, data["name"], who.actor)
    return {**_server_key(row), "key": secret}, 201


@bp.delete("/environments/<api_key>/api-keys/<int:key_id>/")
@operation("Delete a server-side key (project admins; SDKs using it are refused at once)",
           "environments", status=204)
def delete_server_key(api_key: str, key_id: int):
    who = principal()
    env = api_auth.environment_for(who, api_key, needs="admin")
    environments.delete_server_key(env, key_id, who.actor)
    return "", 204
