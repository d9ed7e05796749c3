"""Admin API: a flag's state per environment (`/api/v1/environments/<key>/featurestates/`)
and its segment overrides (`/api/v1/environments/<key>/segment-overrides/`). Changes are
refused with 409 while the flag is in a release pipeline.

In an environment that needs approvals a change is not applied: it opens a change request
(202, with the request), which a person asks for, so organisation API keys are refused there.
"""

from sqlalchemy import select

from jobs import outbox
from webapp.extensions import db
from webapp.models import (
    ChangeRequest,
    Environment,
    Feature,
    FeatureState,
    Segment,
    SegmentOverride,
)
from webapp.services.change_requests import opening
from webapp.services.errors import NotFound
from webapp.services.platform import api_auth, flags
from webapp.views.api import bp
from webapp.views.api import change_requests as change_request_api
from webapp.views.api.common import (
    body,
    int_arg,
    iso,
    operation,
    paginate,
    principal,
    wire_errors,
)
from webapp.views.api.governance_schemas import ChangeRequestOpenedSchema
from webapp.views.api.schemas import (
    FeatureStateSchema,
    FeatureStateUpdateSchema,
    SegmentOverrideCreateSchema,
    SegmentOverrideSchema,
    SegmentOverrideUpdateSchema,
    page_schema,
)


def serialize_state(state: FeatureState) -> dict:
    return {"id": state.id, "feature": state.feature_id, "environment": state.environment_id,
            "enabled": state.enabled, "feature_state_value": state.value, "identity": None,
            "feature_segment": None, "updated_at": iso(state.updated_at)}


def serialize_override(override: SegmentOverride) -> dict:
    return {"id": override.id, "feature": override.feature_id, "segment": override.segment_id,
            "environment": override.environment_id, "priority": override.priority,
            "enabled": override.enabled, "feature_state_value": override.value}


def _state_in(env: Environment, state_id: int) -> FeatureState:
    return flags.get_state(env.id, state_id)


def _override_in(env: Environment, override_id: int) -> SegmentOverride:
    return flags.get_override(env.id, override_id)


# The services name fields as the dashboard's forms do.
VALUE_FIELDS = {"value": "feature_state_value", "segment_id": "segment"}


def _override_of(environment_id: int, feature_id: int, segment_id: int) -> SegmentOverride:
    override = flags.find_override(environment_id, feature_id, segment_id)
    if override is None:
        raise NotFound("Segment override not found.")
    return override


FEATURE_FILTER = {"feature": {"type": "integer", "required": False}}
GATED = {202: ChangeRequestOpenedSchema}


def _opened(cr: ChangeRequest):
    """The 202 answer: nothing changed yet, the change request holds the change."""
    outbox.ring()
    return {"detail": f"{cr.title}: change request #{cr.id} opened; nothing changes until it is "
                      "approved and committed.",
            "change_request": change_request_api.read(cr.project_id, cr.id)}, 202


@bp.get("/environments/<api_key>/featurestates/")
@operation("List the flags' states in an environment (?feature=<id> for one flag)",
           "feature states", response=page_schema(FeatureStateSchema), paginated=True,
           query=FEATURE_FILTER)
def list_featurestates(api_key: str):
    env = api_auth.environment_for(principal(), api_key)
    query = select(FeatureState).where(FeatureState.environment_id == env.id) \
        .order_by(FeatureState.feature_id)
    if (feature_id := int_arg("feature")) is not None:
        query = query.where(FeatureState.feature_id == feature_id)
    return paginate(query, serialize_state, api_key=api_key)


@bp.get("/environments/<api_key>/featurestates/<int:state_id>/")
@operation("Read a flag's state in an environment", "feature states",
           response=FeatureStateSchema)
def get_featurestate(api_key: str, state_id: int):
    env = api_auth.environment_for(principal(), api_key)
    return serialize_state(_state_in(env, state_id))


@bp.patch("/environments/<api_key>/featurestates/<int:state_id>/")
@operation("Turn a flag on/off or set its value in an environment (editors; 409 while the "
           "flag is in a release pipeline; 202 with a change request where the environment "
           "needs approvals)", "feature states", body=FeatureStateUpdateSchema,
           response=FeatureStateSchema, also=GATED)
def update_featurestate(api_key: str, state_id: int):
    who = principal()
    env = api_auth.environment_for(who, api_key, needs="editor")
    state = _state_in(env, state_id)
    data = body(FeatureStateUpdateSchema)
    changes = {}
    if "feature_state_value" in data:
        changes["raw_value"] = data["feature_state_value"]
    with wire_errors(VALUE_FIELDS):
        opened = opening.set_state(state.feature, env.id, who.actor,
                                           enabled=data.get("enabled"), **changes)
    if opened is not None:
        return _opened(opened)
    db.session.refresh(state)
    return serialize_state(state)


@bp.get("/environments/<api_key>/segment-overrides/")
@operation("List the segment overrides in an environment (?feature=<id> for one flag)",
           "segment overrides", response=page_schema(SegmentOverrideSchema), paginated=True,
           query=FEATURE_FILTER)
def list_segment_overrides(api_key: str):
    env = api_auth.environment_for(principal(), api_key)
    query = select(SegmentOverride).join(Segment, Segment.id == SegmentOverride.segment_id) \
        .where(SegmentOverride.environment_id == env.id, Segment.is_system.is_(False)) \
        .order_by(SegmentOverride.feature_id, SegmentOverride.priority, SegmentOverride.id)
    if (feature_id := int_arg("feature")) is not None:
        query = query.where(SegmentOverride.feature_id == feature_id)
    return paginate(query, serialize_override, api_key=api_key)


@bp.post("/environments/<api_key>/segment-overrides/")
@operation("Override a flag for a segment in an environment (editors; 409 while the flag is "
           "in a release pipeline; 422 when the override exists; 202 with a change request "
           "where the environment needs approvals)", "segment overrides",
           body=SegmentOverrideCreateSchema, response=SegmentOverrideSchema, status=201,
           also=GATED)
def create_segment_override(api_key: str):
    who = principal()
    env = api_auth.environment_for(who, api_key, needs="editor")
    data = body(SegmentOverrideCreateSchema)
    feature = db.session.get(Feature, data["feature"])
    if feature is None or feature.project_id != env.project_id:
        raise NotFound("Feature not found in this project.")
    with wire_errors(VALUE_FIELDS):
        opened = opening.save_override(
            feature, env.id, data["segment"], who.actor, enabled=data["enabled"],
            raw_value=data["feature_state_value"], priority=data["priority"])
    if opened is not None:
        return _opened(opened)
    return serialize_override(_override_of(env.id, feature.id, data["segment"])), 201


@bp.patch("/environments/<api_key>/segment-overrides/<int:override_id>/")
@operation("Change a segment override (editors; 409 while the flag is in a release pipeline; "
           "202 with a change request where the environment needs approvals)",
           "segment overrides", body=SegmentOverrideUpdateSchema, response=SegmentOverrideSchema,
           also=GATED)
def update_segment_override(api_key: str, override_id: int):
    who = principal()
    env = api_auth.environment_for(who, api_key, needs="editor")
    override = _override_in(env, override_id)
    data = body(SegmentOverrideUpdateSchema)
    with wire_errors(VALUE_FIELDS):
        opened = opening.save_override(
            override.feature, env.id, override.segment_id, who.actor, must_exist=True,
            enabled=data.get("enabled", override.enabled),
            raw_value=data.get("feature_state_value", override.value),
            priority=data.get("priority", override.priority))
    if opened is not None:
        return _opened(opened)
    db.session.refresh(override)
    return serialize_override(override)


@bp.delete("/environments/<api_key>/segment-overrides/<int:override_id>/")
@operation("Remove a segment override (editors; 409 while the flag is in a release pipeline; "
           "202 with a change request where the environment needs approvals)",
           "segment overrides", status=204, also=GATED)
def delete_segment_override(api_key: str, override_id: int):
    who = principal()
    env = api_auth.environment_for(who, api_key, needs="editor")
    override = _override_in(env, override_id)
    opened = opening.remove_override(override.feature, env.id, override.segment_id,
                                             who.actor)
    if opened is not None:
        return _opened(opened)
    return "", 204
