"""Use cases the admin API needs beyond creating things: changing an environment's settings,
a flag's state in an environment, and segment overrides. Flag changes go through
`flag_changes.apply_change` (revision bump + audit) and are refused while a pipeline owns
the flag."""

from typing import Any

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Environment, Feature, FeatureState, Segment, SegmentOverride
from webapp.services import audit, flag_changes, values
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.projects import check_name


def update_environment(env: Environment, actor: Actor, *, name: str | None = None,
                       minimum_change_request_approvals: int | None = None,
                       clear_approvals: bool = False) -> Environment:
    """Rename an environment and/or set how many approvals its changes need (0 = none).

    Refuses an empty, over-long or duplicate name and a negative count. Audited as
    ENVIRONMENT_UPDATED with before/after.
    """
    before = {"name": env.name, "minimum_change_request_approvals":
              env.minimum_change_request_approvals}
    if name is not None:
        name = check_name(name)
        taken = db.session.scalar(select(Environment.id).where(
            Environment.project_id == env.project_id, Environment.name == name,
            Environment.id != env.id))
        if taken:
            raise Invalid("Name taken.", {"name": ["This project already has an environment "
                                                   "with this name."]})
        env.name = name
    if clear_approvals:
        env.minimum_change_request_approvals = 0
    elif minimum_change_request_approvals is not None:
        if minimum_change_request_approvals < 0:
            raise Invalid("Negative approvals.", {"minimum_change_request_approvals": [
                "Zero or more."]})
        env.minimum_change_request_approvals = minimum_change_request_approvals
    after = {"name": env.name, "minimum_change_request_approvals":
             env.minimum_change_request_approvals}
    if after != before:
        flag_changes.bump_revision(env.id)  # the name is in the environment document
        audit.record(actor, "ENVIRONMENT_UPDATED", f"Environment {env.name} updated",
                     project_id=env.project_id, environment_id=env.id,
                     object_type="environment", object_id=env.id, object_label=env.name,
                     before=before, after=after)
    db.session.commit()
    return env


def update_state(state: FeatureState, actor: Actor, changes: dict[str, Any]) -> FeatureState:
    """Set a flag's `enabled` and/or value (`feature_state_value`) in one environment.

    Refuses a value that does not fit the flag's type (422) and any change while the flag is
    in a release pipeline (409). Audited as FEATURE_STATE_UPDATED.
    """
    feature = state.feature
    flag_changes.refuse_if_in_flight(feature.id)
    change: dict[str, Any] = {"kind": "state", "environment_id": state.environment_id,
                              "feature_id": feature.id}
    if "enabled" in changes:
        change["enabled"] = bool(changes["enabled"])
    if "feature_state_value" in changes:
        change["value"] = values.parse(feature.value_type, changes["feature_state_value"],
                                       "feature_state_value")
    flag_changes.apply_change(change, actor, project_id=feature.project_id,
                              event_type="FEATURE_STATE_UPDATED",
                              message=f"Flag {feature.name} changed in {state.environment.name}",
                              object_label=feature.name)
    db.session.commit()
    return state


def set_override(env: Environment, feature: Feature, segment: Segment, actor: Actor,
                 changes: dict[str, Any], *, create: bool) -> SegmentOverride:
    """Create (`create=True`) or change a segment override of a flag in one environment.

    Refuses a segment or flag of another project or a hidden system segment (404), a second
    override for the same segment (409 on create), a value that does not fit (422), and any
    change while the flag is in a release pipeline (409). Audited as SEGMENT_OVERRIDE_CREATED
    or SEGMENT_OVERRIDE_UPDATED.
    """
    if feature.project_id != env.project_id or segment.project_id != env.project_id \
            or segment.is_system:
        raise NotFound("Feature or segment not found in this project.")
    flag_changes.refuse_if_in_flight(feature.id)
    existing = _override(env.id, feature.id, segment.id)
    if create and existing is not None:
        raise Conflict("This flag already has an override for this segment here.")
    change: dict[str, Any] = {"kind": "override", "environment_id": env.id,
                              "feature_id": feature.id, "segment_id": segment.id}
    if "enabled" in changes:
        change["enabled"] = bool(changes["enabled"])
    if "feature_state_value" in changes:
        change["value"] = values.parse(feature.value_type, changes["feature_state_value"],
                                       "feature_state_value")
    if changes.get("priority") is not None:
        change["priority"] = changes["priority"]
    flag_changes.apply_change(
        change, actor, project_id=env.project_id,
        event_type="SEGMENT_OVERRIDE_CREATED" if existing is None else "SEGMENT_OVERRIDE_UPDATED",
        message=f"Override of {feature.name} for segment {segment.name} in {env.name} "
                f"{'created' if existing is None else 'changed'}",
        object_label=feature.name)
    db.session.commit()
    return _override(env.id, feature.id, segment.id)


def remove_override(override: SegmentOverride, actor: Actor) -> None:
    """Delete a segment override (refused while the flag is in a release pipeline: 409).
    Audited as SEGMENT_OVERRIDE_DELETED."""
    feature, env, segment = override.feature, override.environment, override.segment
    flag_changes.refuse_if_in_flight(feature.id)
    flag_changes.apply_change(
        {"kind": "remove_override", "environment_id": env.id, "feature_id": feature.id,
         "segment_id": segment.id}, actor, project_id=env.project_id,
        event_type="SEGMENT_OVERRIDE_DELETED",
        message=f"Override of {feature.name} for segment {segment.name} in {env.name} removed",
        object_label=feature.name)
    db.session.commit()


def _override(environment_id: int, feature_id: int, segment_id: int) -> SegmentOverride | None:
    return db.session.scalar(select(SegmentOverride).where(
        SegmentOverride.environment_id == environment_id,
        SegmentOverride.feature_id == feature_id, SegmentOverride.segment_id == segment_id))
