"""Admin API: a project's audit log (`/api/v1/audit/?project=<id>`, as in Flagsmith), with the
audit page's filters. Newest first, paged by keyset like the page (`next` and `previous` are
links with `before=` / `after=` an entry id), and masked as the page masks it: secret-looking
before/after values are hidden from everyone but the project's admins."""

from typing import Any

from flask import request
from marshmallow import ValidationError
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Environment, Feature, ReleasePipeline
from webapp.services.errors import Invalid
from webapp.services.governance import audit_log
from webapp.services.platform import api_auth
from webapp.views.api import bp
from webapp.views.api.common import (
    DEFAULT_PAGE_SIZE,
    field_messages,
    iso,
    operation,
    principal,
    url_here,
)
from webapp.views.api.governance_schemas import AuditEntrySchema, AuditQuerySchema
from webapp.views.api.schemas import page_schema

# The project's objects a filter names; an id of another project is refused, as on the page.
_OBJECTS: dict[str, tuple[type[Feature | ReleasePipeline | Environment], str]] = {
    "feature": (Feature, "Pick a feature of this project."),
    "pipeline": (ReleasePipeline, "Pick a release pipeline of this project."),
    "environment": (Environment, "Pick an environment of this project.")}


def serialize(entry: audit_log.EntryRow) -> dict[str, Any]:
    return {"id": entry.id, "created_at": iso(entry.created_at), "event_type": entry.event_type,
            "actor": entry.actor_label, "actor_type": entry.actor_type, "message": entry.message,
            "environment": entry.environment_id, "feature": entry.feature_id,
            "pipeline": entry.pipeline_id, "change_request": entry.change_request_id,
            "object_type": entry.object_type, "object_id": entry.object_id,
            "object_label": entry.object_label, "before": entry.before, "after": entry.after}


@bp.get("/audit/")
@operation("List a project's audit log, newest first. Filters: event_type, actor (its label, "
           "e.g. an email), feature, pipeline, environment (ids), since and until (UTC dates "
           "or ISO 8601 times, both inclusive); pages by before=/after= an entry id "
           "(follow next/previous)", "audit log", response=page_schema(AuditEntrySchema),
           query={name: {"type": kind, "required": name == "project"} for name, kind in (
               ("project", "integer"), ("event_type", "string"), ("actor", "string"),
               ("feature", "integer"), ("pipeline", "integer"), ("environment", "integer"),
               ("since", "string"), ("until", "string"), ("before", "integer"),
               ("after", "integer"), ("page_size", "integer"))})
def list_audit_log():
    query = _query()
    who = principal()
    project = api_auth.project_for(who, query["project"])
    _refuse_foreign_objects(project.id, query)
    filters = audit_log.AuditFilter(
        event_type=query.get("event_type"), actor=query.get("actor"),
        feature_id=query.get("feature"), pipeline_id=query.get("pipeline"),
        environment_id=query.get("environment"),
        since=query["since"][0] if "since" in query else None,
        until=query["until"][1] if "until" in query else None)
    size = query.get("page_size", DEFAULT_PAGE_SIZE)
    page = audit_log.page(project.id, filters, masked=api_auth.role_in(who, project) != "admin",
                          before=query.get("before"), after=query.get("after"), size=size,
                          readable=False)  # the API answers ids and JSON, not words
    return {"count": audit_log.count(project.id, filters),
            "next": _link(size, before=page.older_cursor) if page.older_cursor else None,
            "previous": _link(size, after=page.newer_cursor) if page.newer_cursor else None,
            "results": [serialize(entry) for entry in page.entries]}


def _query() -> dict[str, Any]:
    """The query string loaded by AuditQuerySchema (empty values mean "any"): 422 with a
    message per field."""
    given = {key: value for key, value in request.args.items() if value != ""}
    try:
        return AuditQuerySchema().load(given)
    except ValidationError as error:
        raise Invalid("Invalid filter.", field_messages(error)) from None


def _refuse_foreign_objects(project_id: int, query: dict[str, Any]) -> None:
    errors = {}
    for name, (model, message) in _OBJECTS.items():
        if name in query and db.session.scalar(select(model.project_id).where(
                model.id == query[name])) != project_id:
            errors[name] = [message]
    if errors:
        raise Invalid("Invalid filter.", errors)


def _link(size: int, **cursor: int) -> str:
    args = {k: v for k, v in request.args.to_dict().items() if k not in ("before", "after")}
    return url_here(**{**args, "page_size": size, **cursor})
