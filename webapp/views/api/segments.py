"""Admin API: a project's segments (`/api/v1/projects/<id>/segments/`), rules as nested
`rules`/`conditions` with `property`, `operator`, `value`. Hidden system segments (phased
rollouts) are not listed."""

from sqlalchemy import select

from webapp.models import Segment
from webapp.services.platform import api_auth, segments
from webapp.views.api import bp
from webapp.views.api.common import body, operation, paginate, principal
from webapp.views.api.schemas import (
    SegmentCreateSchema,
    SegmentSchema,
    SegmentUpdateSchema,
    page_schema,
)


def serialize(segment: Segment) -> dict:
    return {"id": segment.id, "name": segment.name, "description": segment.description or None,
            "project": segment.project_id, "rules": segment.rules}


def segment_in(project_id: int, segment_id: int) -> Segment:
    return segments.get_segment(project_id, segment_id)


@bp.get("/projects/<int:project_id>/segments/")
@operation("List a project's segments", "segments", response=page_schema(SegmentSchema),
           paginated=True)
def list_segments(project_id: int):
    project = api_auth.project_for(principal(), project_id)
    query = select(Segment).where(Segment.project_id == project.id,
                                  Segment.is_system.is_(False)).order_by(Segment.id)
    return paginate(query, serialize, project_id=project_id)


@bp.post("/projects/<int:project_id>/segments/")
@operation("Create a segment (editors)", "segments", body=SegmentCreateSchema,
           response=SegmentSchema, status=201)
def create_segment(project_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    data = body(SegmentCreateSchema)
    segment = segments.create_segment(project, data["name"], data["rules"], who.actor,
                                      description=data["description"])
    return serialize(segment), 201


@bp.get("/projects/<int:project_id>/segments/<int:segment_id>/")
@operation("Read a segment", "segments", response=SegmentSchema)
def get_segment(project_id: int, segment_id: int):
    project = api_auth.project_for(principal(), project_id)
    return serialize(segment_in(project.id, segment_id))


@bp.patch("/projects/<int:project_id>/segments/<int:segment_id>/")
@operation("Change a segment's name, description or rules (editors)", "segments",
           body=SegmentUpdateSchema, response=SegmentSchema)
def update_segment(project_id: int, segment_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    segment = segment_in(project.id, segment_id)
    data = body(SegmentUpdateSchema)
    segments.update_segment(segment, who.actor, name=data.get("name", segment.name),
                            description=data.get("description", segment.description),
                            rules=data.get("rules", segment.rules))
    return serialize(segment)


@bp.delete("/projects/<int:project_id>/segments/<int:segment_id>/")
@operation("Delete a segment and its overrides (editors; 409 while a pipeline uses it)",
           "segments", status=204)
def delete_segment(project_id: int, segment_id: int):
    who = principal()
    project = api_auth.project_for(who, project_id, needs="editor")
    segments.delete_segment(segment_in(project.id, segment_id), who.actor)
    return "", 204
