"""Segments: named rule trees over identity traits."""

from typing import Any

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Environment, Project, Segment
from webapp.services import audit
from webapp.services.actors import Actor
from webapp.services.flag_changes import bump_revision
from webapp.services.projects import check_name

OPERATORS = (
    "EQUAL", "NOT_EQUAL", "GREATER_THAN", "GREATER_THAN_INCLUSIVE", "LESS_THAN",
    "LESS_THAN_INCLUSIVE", "CONTAINS", "NOT_CONTAINS", "REGEX", "PERCENTAGE_SPLIT", "MODULO",
    "IS_SET", "IS_NOT_SET", "IN",
)
RULE_TYPES = ("ALL", "ANY", "NONE")


def bump_project_revisions(project_id: int) -> None:
    for env_id in db.session.scalars(select(Environment.id).where(Environment.project_id == project_id)):
        bump_revision(env_id)


def create_segment(
    project: Project, name: str, rules: list[dict[str, Any]], actor: Actor, *,
    description: str = "", is_system: bool = False, commit: bool = True,
) -> Segment:
    """Create a segment. Audited as SEGMENT_CREATED (system segments too)."""
    name = check_name(name)
    segment = Segment(project_id=project.id, name=name, description=description, rules=rules,
                      is_system=is_system)
    db.session.add(segment)
    db.session.flush()
    bump_project_revisions(project.id)
    audit.record(actor, "SEGMENT_CREATED", f"Segment {name} created", project_id=project.id,
                 object_type="segment", object_id=segment.id, object_label=name,
                 after={"name": name, "rules": rules})
    if commit:
        db.session.commit()
    return segment
