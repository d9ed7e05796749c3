"""Admin API: a project's integrations (`/api/v1/projects/<id>/integrations/`): Prometheus for
health checks, and the alert receiver. Admins (and organisation keys) only."""

from flask import url_for
from marshmallow import fields, validate

from webapp.services.platform import api_auth
from webapp.services.runs import alerts
from webapp.views.api import bp
from webapp.views.api.common import Shape, body, operation, principal

PATH = "/projects/<int:project_id>/integrations/"


class IntegrationsSchema(Shape):
    prometheus_url = fields.String(required=True, metadata={
        "description": "Where health checks ask PromQL queries (empty: none)."})
    prometheus_auth_header_set = fields.Boolean(required=True, metadata={
        "description": "Whether an Authorization header is stored (it is never shown)."})
    alert_receiver_url = fields.String(required=True, allow_none=True, metadata={
        "description": "The Alertmanager webhook URL (a secret: admins only), or null."})


class IntegrationsUpdateSchema(Shape):
    prometheus_url = fields.String(load_default="", validate=validate.Length(max=500))
    prometheus_auth_header = fields.String(load_default="", validate=validate.Length(max=1000),
                                           metadata={"description": "Blank keeps the stored one."})
    clear_auth_header = fields.Boolean(load_default=False)
    alert_receiver = fields.String(load_default="keep", validate=validate.OneOf(
        ("keep", "enable", "rotate", "disable")))


def _answer(project_id: int) -> dict:

    row = alerts.integration(project_id)
    secret = row.alert_secret if row else None
    return {"prometheus_url": row.prometheus_url if row else "",
            "prometheus_auth_header_set": bool(row and row.prometheus_auth_header),
            "alert_receiver_url": url_for("alerts.receive", secret=secret, _external=True)
            if secret else None}


@bp.get(PATH)
@operation("Read a project's integrations (admins)", "projects", response=IntegrationsSchema)
def get_integrations(project_id: int):
    project = api_auth.project_for(principal(), project_id, needs="admin")
    return _answer(project.id)


@bp.put(PATH)
@operation("Set a project's integrations (admins; audited)", "projects",
           body=IntegrationsUpdateSchema, response=IntegrationsSchema)
def update_integrations(project_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="admin")
    data = body(IntegrationsUpdateSchema)
    alerts.update_integrations(project, data, who.actor)
    return _answer(project.id)
