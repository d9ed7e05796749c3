"""Admin API: a project's features (`/api/v1/projects/<id>/features/`)."""

from typing import Any

from sqlalchemy import select

from webapp.models import Feature
from webapp.services.platform import api_auth, flags
from webapp.views.api import bp
from webapp.views.api.common import body, iso, operation, paginate, principal
from webapp.views.api.schemas import (
    FeatureCreateSchema,
    FeatureSchema,
    FeatureUpdateSchema,
    page_schema,
)


def serialize(feature: Feature) -> dict:
    return {"id": feature.id, "name": feature.name, "description": feature.description or None,
            "type": "STANDARD", "value_type": feature.value_type,
            "default_enabled": feature.default_enabled, "initial_value": feature.default_value,
            "tags": list(feature.tags or []), "project": feature.project_id,
            "created_date": iso(feature.created_at)}


def _value_type_of(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return "string"


def feature_in(project_id: int, feature_id: int) -> Feature:
    return flags.get_feature(project_id, feature_id, "Feature not found.")


@bp.get("/projects/<int:project_id>/features/")
@operation("List a project's features", "features", response=page_schema(FeatureSchema),
           paginated=True)
def list_features(project_id: int):
    project = api_auth.project_for(principal(), project_id)
    return paginate(select(Feature).where(Feature.project_id == project.id).order_by(Feature.id),
                    serialize, project_id=project_id)


@bp.post("/projects/<int:project_id>/features/")
@operation("Create a feature (editors)", "features", body=FeatureCreateSchema,
           response=FeatureSchema, status=201)
def create_feature(project_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    data = body(FeatureCreateSchema)
    feature = flags.create_feature(
        project, data["name"], who.actor, description=data["description"],
        value_type=data["value_type"] or _value_type_of(data["initial_value"]),
        default_enabled=data["default_enabled"], default_value=data["initial_value"])
    return serialize(feature), 201


@bp.get("/projects/<int:project_id>/features/<int:feature_id>/")
@operation("Read a feature", "features", response=FeatureSchema)
def get_feature(project_id: int, feature_id: int):
    project = api_auth.project_for(principal(), project_id)
    return serialize(feature_in(project.id, feature_id))


@bp.patch("/projects/<int:project_id>/features/<int:feature_id>/")
@operation("Edit a feature's description and tags (editors; allowed while in a pipeline)",
           "features", body=FeatureUpdateSchema, response=FeatureSchema)
def update_feature(project_id: int, feature_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    feature = feature_in(project.id, feature_id)
    data = body(FeatureUpdateSchema)
    flags.update_details(feature, who.actor,
                         description=data.get("description", feature.description),
                         tags=data.get("tags", list(feature.tags or [])))
    return serialize(feature)


@bp.delete("/projects/<int:project_id>/features/<int:feature_id>/")
@operation("Delete a feature (editors; 409 while in a pipeline or with release history)",
           "features", status=204)
def delete_feature(project_id: int, feature_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    flags.delete_feature(feature_in(project.id, feature_id), who.actor)
    return "", 204
