"""Features (flags) and their per-environment states."""

from typing import Any

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import VALUE_TYPES, Environment, Feature, FeatureState, Project
from webapp.services import audit, values
from webapp.services.actors import Actor
from webapp.services.errors import Invalid
from webapp.services.flag_changes import bump_revision
from webapp.services.projects import check_name


def create_feature(
    project: Project,
    name: str,
    actor: Actor,
    *,
    description: str = "",
    value_type: str = "none",
    default_enabled: bool = False,
    default_value: Any = None,
    commit: bool = True,
) -> Feature:
    """Create a feature with its default state in every environment.

    Refuses an empty, over-long or duplicate name, an unknown type, a default value that does
    not fit the type. Audited as FEATURE_CREATED.
    """
    name = check_name(name)
    if value_type not in VALUE_TYPES:
        raise Invalid("Unknown type.", {"value_type": ["Choose a flag type."]})
    default_value = values.parse(value_type, default_value, "default_value")
    taken = db.session.scalar(
        select(Feature.id).where(Feature.project_id == project.id, Feature.name == name)
    )
    if taken:
        raise Invalid("Name taken.", {"name": ["A flag with this name already exists in this project."]})
    feature = Feature(
        project_id=project.id, name=name, description=description.strip(), value_type=value_type,
        default_enabled=default_enabled, default_value=default_value,
    )
    db.session.add(feature)
    db.session.flush()
    for env_id in db.session.scalars(select(Environment.id).where(Environment.project_id == project.id)):
        db.session.add(FeatureState(feature_id=feature.id, environment_id=env_id,
                                    enabled=default_enabled, value=default_value))
        bump_revision(env_id)
    audit.record(actor, "FEATURE_CREATED", f"Flag {name} created", project_id=project.id,
                 object_type="feature", object_id=feature.id, object_label=name,
                 feature_id=feature.id,
                 after={"name": name, "value_type": value_type, "default_enabled": default_enabled,
                        "default_value": default_value})
    if commit:
        db.session.commit()
    return feature
