"""Admin API: a project's webhooks (`/api/v1/projects/<id>/webhooks/`), for project admins.

The same rules as the settings page: http(s) URLs on public addresses only, a non-empty list
of known events, a secret made when none is given (every delivery is signed)."""

from marshmallow import fields, validate

from webapp.models import Webhook
from webapp.services.errors import NotFound
from webapp.services.governance import webhooks
from webapp.services.governance.webhook_events import EVENTS
from webapp.services.platform import api_auth
from webapp.views.api import bp
from webapp.views.api.common import Shape, body, iso, operation, paginate_list, principal
from webapp.views.api.schemas import page_schema

EVENT = fields.String(validate=validate.OneOf(EVENTS))


class WebhookSchema(Shape):
    id = fields.Integer(required=True)
    project = fields.Integer(required=True)
    url = fields.String(required=True)
    secret = fields.String(required=True, metadata={
        "description": "Key of the X-Flagsmith-Signature HMAC-SHA256 over the raw body."})
    events = fields.List(fields.String(), required=True, metadata={
        "description": f"Any of: {', '.join(EVENTS)}."})
    enabled = fields.Boolean(required=True)
    disabled_reason = fields.String(required=True, metadata={
        "description": "Why Railyard disabled it (it kept failing); empty otherwise."})
    created_date = fields.String(required=True)


class WebhookCreateSchema(Shape):
    url = fields.String(required=True)
    events = fields.List(EVENT, required=True, validate=validate.Length(min=1))
    secret = fields.String(load_default="", validate=validate.Length(max=webhooks.MAX_SECRET))
    enabled = fields.Boolean(load_default=True)


class WebhookUpdateSchema(Shape):
    url = fields.String()
    events = fields.List(EVENT, validate=validate.Length(min=1))
    secret = fields.String(validate=validate.Length(min=1, max=webhooks.MAX_SECRET))
    enabled = fields.Boolean()


def serialize(hook: Webhook) -> dict:
    return {"id": hook.id, "project": hook.project_id, "url": hook.url, "secret": hook.secret,
            "events": hook.events, "enabled": hook.enabled,
            "disabled_reason": hook.disabled_reason, "created_date": iso(hook.created_at)}


def _hook(project_id: int, webhook_id: int) -> Webhook:
    project = api_auth.project_for(principal(), project_id, needs="admin")
    hook = webhooks.get_webhook(project.id, webhook_id)
    if hook.kind != "webhook":
        raise NotFound("Webhook not found.")
    return hook


@bp.get("/projects/<int:project_id>/webhooks/")
@operation("List a project's webhooks (project admins)", "webhooks",
           response=page_schema(WebhookSchema), paginated=True)
def list_webhooks(project_id: int):
    project = api_auth.project_for(principal(), project_id, needs="admin")
    return paginate_list(webhooks.list_webhooks(project.id), serialize, project_id=project.id)


@bp.post("/projects/<int:project_id>/webhooks/")
@operation("Add a webhook (project admins); private and loopback addresses are refused",
           "webhooks", body=WebhookCreateSchema, response=WebhookSchema, status=201)
def create_webhook(project_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="admin")
    data = body(WebhookCreateSchema)
    hook = webhooks.create_webhook(project, who.actor, url=data["url"], events=data["events"],
                                   secret=data["secret"], enabled=data["enabled"])
    return serialize(hook), 201


@bp.get("/projects/<int:project_id>/webhooks/<int:webhook_id>/")
@operation("Read a webhook (project admins)", "webhooks", response=WebhookSchema)
def get_webhook(project_id: int, webhook_id: int):
    return serialize(_hook(project_id, webhook_id))


@bp.patch("/projects/<int:project_id>/webhooks/<int:webhook_id>/")
@operation("Change a webhook's URL, events, secret or enabled flag (project admins); enabling "
           "a webhook Railyard disabled sends what waited", "webhooks",
           body=WebhookUpdateSchema, response=WebhookSchema)
def update_webhook(project_id: int, webhook_id: int):
    hook = _hook(project_id, webhook_id)
    data = body(WebhookUpdateSchema)
    webhooks.update_webhook(hook, principal().actor, url=data.get("url"),
                            events=data.get("events"), secret=data.get("secret"),
                            enabled=data.get("enabled"))
    return serialize(hook)


@bp.delete("/projects/<int:project_id>/webhooks/<int:webhook_id>/")
@operation("Delete a webhook and its delivery log (project admins)", "webhooks", status=204)
def delete_webhook(project_id: int, webhook_id: int):
    webhooks.delete_webhook(_hook(project_id, webhook_id), principal().actor)
    return "", 204
