"""Features (flags) and their per-environment states."""

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import selectinload

from webapp.extensions import db
from webapp.models import (
    VALUE_TYPES,
    AuditEntry,
    ChangeRequest,
    Environment,
    Feature,
    FeatureState,
    PipelineRun,
    Project,
    ReleasePipeline,
    Segment,
    SegmentOverride,
)
from webapp.models.changes import OverrideChange, OverrideRemoval, StateChange
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.governance import audit
from webapp.services.lookups import one_in
from webapp.services.platform import flag_changes, values
from webapp.services.platform.flag_changes import bump_revision
from webapp.services.platform.projects import check_name

MAX_DESCRIPTION = 2000
_UNSET: Any = object()


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
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise Invalid("Description too long.",
                      {"description": [f"At most {MAX_DESCRIPTION} characters."]})
    default_value = values.parse(value_type, default_value, "default_value")
    taken = db.session.scalar(
        select(Feature.id).where(Feature.project_id == project.id, Feature.name == name)
    )
    if taken:
        raise Invalid("Name taken.",
                      {"name": ["A flag with this name already exists in this project."]})
    feature = Feature(
        project_id=project.id, name=name, description=description, value_type=value_type,
        default_enabled=default_enabled, default_value=default_value,
    )
    db.session.add(feature)
    db.session.flush()
    for env_id in db.session.scalars(
            select(Environment.id).where(Environment.project_id == project.id)):
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


# --- reading ------------------------------------------------------------------------------------

MAX_TAGS = 20
MAX_TAG_LENGTH = 40
HISTORY_LIMIT = 50


def overrides_of(feature_id: int) -> dict[int, list[SegmentOverride]]:
    """The feature's segment overrides by environment id, in priority order (lower wins)."""
    by_env: dict[int, list[SegmentOverride]] = {}
    rows = db.session.scalars(
        select(SegmentOverride).where(SegmentOverride.feature_id == feature_id)
        .options(selectinload(SegmentOverride.segment))
        .order_by(SegmentOverride.priority, SegmentOverride.id))
    for row in rows:
        by_env.setdefault(row.environment_id, []).append(row)
    return by_env


def history(feature_id: int, limit: int = HISTORY_LIMIT) -> list[AuditEntry]:
    """The feature's audit entries, newest first."""
    return list(db.session.scalars(
        select(AuditEntry).where(AuditEntry.feature_id == feature_id)
        .order_by(AuditEntry.id.desc()).limit(limit)))


def environment_of(project_id: int, environment_id: int) -> Environment:
    """An environment of the project; NotFound otherwise."""
    env = db.session.get(Environment, environment_id)
    if env is None or env.project_id != project_id:
        raise NotFound("Environment not found.")
    return env


def segment_of(project_id: int, segment_id: int | None) -> Segment:
    """A segment of the project that people may pick (not a system one); Invalid otherwise."""
    segment = db.session.get(Segment, segment_id) if segment_id is not None else None
    if segment is None or segment.project_id != project_id or segment.is_system:
        raise Invalid("Unknown segment.",
                      {"segment_id": ["Choose one of this project's segments."]})
    return segment


# --- manual changes of states and overrides -----------------------------------------------------


def set_state(feature: Feature, environment_id: int, actor: Actor, *,
              enabled: bool | None = None, raw_value: Any = _UNSET) -> None:
    """Turn the feature on/off and/or set its value in one environment, by hand.

    Refuses an environment of another project (NotFound), a value that does not fit the
    feature's type (Invalid on `value`), and any change while a release pipeline owns the flag
    (Conflict naming it). Audited as FEATURE_STATE_UPDATED with before/after; bumps the
    environment's revision.
    """
    env = environment_of(feature.project_id, environment_id)
    change: StateChange = {"kind": "state", "environment_id": env.id, "feature_id": feature.id}
    if raw_value is not _UNSET:
        change["value"] = values.parse(feature.value_type, raw_value)
    if enabled is not None:
        change["enabled"] = enabled
    flag_changes.refuse_if_in_flight(feature.id)
    parts = []
    if enabled is not None:
        parts.append("enabled" if enabled else "disabled")
    if "value" in change:
        parts.append(f"value set to “{values.show(change['value'])}”")
    flag_changes.apply_change(
        change, actor, project_id=feature.project_id, event_type="FEATURE_STATE_UPDATED",
        message=f"Flag {feature.name} {' and '.join(parts) or 'saved'} in {env.name}",
        object_label=feature.name)
    db.session.commit()


def save_override(feature: Feature, environment_id: int, segment_id: int | None, actor: Actor, *,
                  enabled: bool, raw_value: Any = None, priority: Any = None,
                  must_exist: bool = False) -> None:
    """Create or edit the feature's override for a segment in one environment, by hand.

    Refuses an environment of another project (NotFound), a segment of another project or a
    hidden one, a value not fitting the type, a priority that is not a whole number ≥ 0
    (Invalid), and any change while a release pipeline owns the flag (Conflict). Audited as
    SEGMENT_OVERRIDE_CREATED or SEGMENT_OVERRIDE_UPDATED; bumps the environment's revision.
    """
    env = environment_of(feature.project_id, environment_id)
    segment = segment_of(feature.project_id, segment_id)
    value, parsed_priority = values.parse_override(feature.value_type, raw_value, priority)
    change: OverrideChange = {"kind": "override", "environment_id": env.id,
                              "feature_id": feature.id, "segment_id": segment.id,
                              "enabled": enabled, "value": value, "priority": parsed_priority}
    exists = flag_changes.read_target(change) is not None
    if must_exist and not exists:
        raise NotFound("Override not found.")
    if not must_exist and exists:
        raise Invalid("Override exists.", {"segment_id": [
            f"{segment.name} already has an override in {env.name}; edit it below."]})
    flag_changes.refuse_if_in_flight(feature.id)
    verb = "updated" if exists else "created"
    flag_changes.apply_change(
        change, actor, project_id=feature.project_id,
        event_type=f"SEGMENT_OVERRIDE_{verb.upper()}",
        message=f"Override of {feature.name} for segment {segment.name} {verb} in {env.name}",
        object_label=feature.name)
    db.session.commit()


def remove_override(feature: Feature, environment_id: int, segment_id: int, actor: Actor) -> None:
    """Remove the feature's override for a segment in one environment, by hand.

    Refuses an override that does not exist (NotFound) and any change while a release pipeline
    owns the flag (Conflict). Audited as SEGMENT_OVERRIDE_DELETED; bumps the revision.
    """
    env = environment_of(feature.project_id, environment_id)
    change: OverrideRemoval = {"kind": "remove_override", "environment_id": env.id,
                               "feature_id": feature.id, "segment_id": segment_id}
    if flag_changes.read_target(change) is None:
        raise NotFound("Override not found.")
    segment = db.session.get(Segment, segment_id)
    flag_changes.refuse_if_in_flight(feature.id)
    flag_changes.apply_change(
        change, actor, project_id=feature.project_id, event_type="SEGMENT_OVERRIDE_DELETED",
        message=f"Override of {feature.name} for segment {segment.name if segment else segment_id} "
                f"removed in {env.name}",
        object_label=feature.name)
    db.session.commit()


# --- description, tags, delete ------------------------------------------------------------------


def parse_tags(raw: str | list[str] | None) -> list[str]:
    """Comma-separated tags, trimmed, without duplicates; Invalid on `tags` when too many or
    long.
    """
    items = raw if isinstance(raw, list) else (raw or "").split(",")
    tags: list[str] = []
    for item in items:
        tag = str(item).strip()
        if tag and tag not in tags:
            tags.append(tag)
    if len(tags) > MAX_TAGS:
        raise Invalid("Too many tags.", {"tags": [f"At most {MAX_TAGS} tags."]})
    if any(len(tag) > MAX_TAG_LENGTH for tag in tags):
        raise Invalid("Tag too long.", {"tags": [f"Each tag at most {MAX_TAG_LENGTH} characters."]})
    return tags


def update_details(
    feature: Feature, actor: Actor, *, description: str, tags: str | list[str]
) -> None:
    """Edit the feature's description and tags (allowed while in a pipeline).

    Refuses a description over 2000 characters or bad tags (Invalid). Audited as
    FEATURE_UPDATED with before/after.
    """
    description = (description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise Invalid("Description too long.",
                      {"description": [f"At most {MAX_DESCRIPTION} characters."]})
    new_tags = parse_tags(tags)
    before = {"description": feature.description, "tags": list(feature.tags or [])}
    feature.description, feature.tags = description, new_tags
    audit.record(actor, "FEATURE_UPDATED", f"Flag {feature.name} description and tags edited",
                 project_id=feature.project_id, object_type="feature", object_id=feature.id,
                 object_label=feature.name, feature_id=feature.id, before=before,
                 after={"description": description, "tags": new_tags})
    db.session.commit()


def delete_refusal(feature: Feature) -> str | None:
    """Why the feature cannot be deleted now, or None."""
    run = flag_changes.active_run(feature.id)
    if run is not None:
        return (f"This flag is in the release pipeline “{run.pipeline.name}”: remove it from the "
                "pipeline before deleting it.")
    pipeline_names = list(db.session.scalars(
        select(ReleasePipeline.name)
        .join(PipelineRun, PipelineRun.pipeline_id == ReleasePipeline.id)
        .where(PipelineRun.feature_id == feature.id).distinct()))
    has_requests = db.session.scalar(
        select(ChangeRequest.id).where(ChangeRequest.feature_id == feature.id).limit(1))
    if pipeline_names or has_requests:
        where = ", ".join(f"“{name}”" for name in sorted(pipeline_names)) or "change requests"
        return (f"This flag has release history ({where}) that the audit log links to; "
                "it cannot be deleted. Turn it off everywhere instead.")
    return None


def delete_feature(feature: Feature, actor: Actor) -> None:
    """Delete the feature with its states and segment overrides in every environment.

    Refuses while the flag is in a release pipeline, or when it has pipeline runs or change
    requests (Conflict). Audited as FEATURE_DELETED (before: name, type, description); the
    flag's earlier audit entries stay, with its id and name, their link to the deleted row
    cleared. Bumps every environment's revision.
    """
    refusal = delete_refusal(feature)
    if refusal:
        raise Conflict(refusal)
    project_id, name = feature.project_id, feature.name
    before = {"name": name, "value_type": feature.value_type, "description": feature.description,
              "tags": list(feature.tags or [])}
    # The row disappears, so the entries' foreign key to it must go; their text stays.
    db.session.execute(update(AuditEntry).where(AuditEntry.feature_id == feature.id)
                       .values(feature_id=None))
    db.session.execute(delete(SegmentOverride).where(SegmentOverride.feature_id == feature.id))
    db.session.execute(delete(FeatureState).where(FeatureState.feature_id == feature.id))
    audit.record(actor, "FEATURE_DELETED", f"Flag {name} deleted", project_id=project_id,
                 object_type="feature", object_id=feature.id, object_label=name, before=before)
    db.session.delete(feature)
    for env_id in db.session.scalars(
            select(Environment.id).where(Environment.project_id == project_id)):
        bump_revision(env_id)
    db.session.commit()


def pipelines_in_flight(project_id: int) -> dict[int, tuple[int, str]]:
    """Feature id -> (pipeline id, pipeline name) for the project's flags in flight: one query."""
    rows = db.session.execute(
        select(PipelineRun.feature_id, ReleasePipeline.id, ReleasePipeline.name)
        .join(ReleasePipeline, ReleasePipeline.id == PipelineRun.pipeline_id)
        .where(PipelineRun.project_id == project_id, PipelineRun.ended_at.is_(None)))
    return {feature_id: (pipeline_id, name) for feature_id, pipeline_id, name in rows}


# --- Lookups ------------------------------------------------------------------------------------


def get_feature(project_id: int, feature_id: int, message: str = "Flag not found.") -> Feature:
    """The project's flag; NotFound(`message`) for a flag of another project or none."""
    return one_in(Feature, feature_id, message, project_id=project_id)


def get_state(environment_id: int, state_id: int) -> FeatureState:
    """The environment's feature state; NotFound otherwise."""
    return one_in(FeatureState, state_id, "Feature state not found.",
                  environment_id=environment_id)


def get_override(environment_id: int, override_id: int) -> SegmentOverride:
    """The environment's override of a visible segment; NotFound otherwise."""
    visible = select(Segment.id).where(Segment.is_system.is_(False))
    return one_in(SegmentOverride, override_id, "Segment override not found.",
                  SegmentOverride.segment_id.in_(visible), environment_id=environment_id)


def find_override(environment_id: int, feature_id: int, segment_id: int) -> SegmentOverride | None:
    """The flag's override for the segment in the environment, if there is one."""
    return db.session.scalar(select(SegmentOverride).where(
        SegmentOverride.environment_id == environment_id,
        SegmentOverride.feature_id == feature_id, SegmentOverride.segment_id == segment_id))
