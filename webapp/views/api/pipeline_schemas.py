"""The wire format of release pipelines in the admin API (Flagsmith's shapes): the marshmallow
schemas, and the one place where wire fields map to the services' input, their errors back
to wire paths, and stored stages and actions to wire objects.

A stage: `{name, environment, order, trigger: {trigger_type, trigger_body: {wait_for}},
actions: [{action_type, action_body}]}`. Durations are written as Django writes them
("01:30:00", "2 00:00:00"; "1:30:00" and "1 day, 2:00:00" are read too): a stage's wait_for in
whole seconds, a rollout's increase_every in whole minutes.
What each action type reads from `action_body`:

- TOGGLE_FEATURE: `enabled`
- UPDATE_FEATURE_VALUE: `value`
- TOGGLE_FEATURE_FOR_SEGMENT: `enabled`, `segment_id`
- UPDATE_FEATURE_VALUE_FOR_SEGMENT: `value`, `segment_id`
- PHASED_ROLLOUT: `enabled` (default true), `initial_percentage`, `increase_percentage`,
  `increase_every` (a duration), `value` (optional)
"""

import re
from typing import Any

from marshmallow import ValidationError, fields, validate, validates_schema

from webapp.durations import DAY, HOUR
from webapp.models import (
    ACTION_TYPES,
    RUN_ACTIVE_STATUSES,
    RUN_ENDED_STATUSES,
    TRIGGER_TYPES,
    PipelineStage,
    StageAction,
)
from webapp.models.health import CHECK_KINDS, COMPARISONS, ON_UNHEALTHY
from webapp.services.pipelines.inputs import MAX_STAGES
from webapp.views.api.common import MAX_ID, Id, Shape
from webapp.views.api.schemas import NAME

MAX_ACTIONS = 20  # per stage
MAX_STRING_VALUE = 20_000
# NUL characters never get this far: webapp/input_guard.py refuses them for every request.
TITLE = [NAME]
DESCRIPTION = [validate.Length(max=20_000)]
_DURATION = re.compile(r"^(?:(?P<days>\d{1,5})(?: days?,)? )?"
                       r"(?P<hours>\d{1,7}):(?P<minutes>[0-5]?\d):(?P<seconds>[0-5]?\d)$")


class Duration(fields.String):
    """A duration as text, loaded as whole seconds; a whole number of minutes unless
    `seconds=True` (a stage's wait_for)."""

    default_error_messages = {
        "format": "Write the duration as H:MM:SS or D HH:MM:SS, like 1:30:00 or 2 00:00:00.",
        "minutes": "Use whole minutes (the seconds must be 00).",
    }

    def __init__(self, *args: Any, seconds: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seconds = seconds

    # Text on the wire (String's checks, "string" in the OpenAPI document), seconds once
    # loaded: marshmallow's typing ties the two to one type.
    def _deserialize(  # type: ignore[override]
            self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        match = _DURATION.match(super()._deserialize(value, attr, data, **kwargs).strip())
        if match is None:
            raise self.make_error("format")
        days, hours, minutes, seconds = (int(match[name] or 0)
                                         for name in ("days", "hours", "minutes", "seconds"))
        if seconds and not self.seconds:
            raise self.make_error("minutes")
        return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


class FlagValue(fields.Raw):
    """A flag value: text, a whole number, true/false, or null."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and -2**63 <= value < 2**63:
            return value
        if isinstance(value, str) and len(value) <= MAX_STRING_VALUE:
            return value
        raise ValidationError("A text (at most 20,000 characters), a whole number, true/false "
                              "or null.")


def duration_text(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    days, rest = divmod(seconds, DAY)
    hours, rest = divmod(rest, HOUR)
    minutes, seconds = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"{days} {text}" if days else text


# --- stages and actions (requests and answers alike) --------------------------------------------

class PipelineTriggerBodySchema(Shape):
    wait_for = Duration(allow_none=True, seconds=True, metadata={
        "description": "WAIT_FOR: how long, e.g. 00:00:30, 1:00:00 or 2 00:00:00 (at least "
                       "one second)."})


class PipelineTriggerSchema(Shape):
    trigger_type = fields.String(required=True, validate=validate.OneOf(TRIGGER_TYPES))
    trigger_body = fields.Nested(PipelineTriggerBodySchema, allow_none=True, load_default=None)


class PipelineActionBodySchema(Shape):
    enabled = fields.Boolean(allow_none=True)
    segment_id = Id(allow_none=True)
    value = FlagValue(allow_none=True, metadata={
        "description": "Text, a whole number, true/false, or null (clears the value)."})
    initial_percentage = fields.Integer(strict=True, allow_none=True,
                                        metadata={"description": "1 to 100."})
    increase_percentage = fields.Integer(strict=True, allow_none=True,
                                         metadata={"description": "1 to 100."})
    increase_every = Duration(allow_none=True)


class PipelineActionInputSchema(Shape):
    action_type = fields.String(required=True, validate=validate.OneOf(ACTION_TYPES))
    action_body = fields.Nested(PipelineActionBodySchema, load_default=dict)


class PipelineHealthCheckSchema(Shape):
    """A health check on a stage (issue 15): evaluated while a flag is in the stage."""

    kind = fields.String(required=True, validate=validate.OneOf(CHECK_KINDS))
    name = fields.String(load_default="", validate=validate.Length(max=255))
    query = fields.String(allow_none=True, metadata={
        "description": "PROMETHEUS: PromQL; {{ flag }} and {{ environment }} are filled in."})
    comparison = fields.String(allow_none=True, validate=validate.OneOf(COMPARISONS), metadata={
        "description": "PROMETHEUS: healthy while `value <comparison> threshold`."})
    threshold = fields.Float(allow_none=True, allow_nan=False)
    interval_seconds = fields.Integer(strict=True, load_default=30,
                                      validate=validate.Range(1, 3600))
    failures_to_trip = fields.Integer(strict=True, load_default=1, validate=validate.Range(1, 100),
                                      metadata={"description": "Failing answers in a row that "
                                                               "make the stage unhealthy."})
    selector = fields.Dict(keys=fields.String(), values=fields.String(), allow_none=True,
                           metadata={"description": "ALERT: labels a firing alert must carry "
                                                    "(besides railyard_flag/railyard_pipeline)."})


class PipelineStageInputSchema(Shape):
    name = fields.String(required=True, validate=TITLE)
    environment = Id(required=True)
    order = fields.Integer(strict=True, load_default=None, validate=validate.Range(0, MAX_ID),
                           metadata={"description": "Position in the pipeline (as listed if "
                                                    "absent)."})
    trigger = fields.Nested(PipelineTriggerSchema,
                            load_default=lambda: {"trigger_type": "ON_ENTER", "trigger_body": None})
    actions = fields.List(fields.Nested(PipelineActionInputSchema), load_default=list,
                          validate=validate.Length(max=MAX_ACTIONS))
    health_checks = fields.List(fields.Nested(PipelineHealthCheckSchema), load_default=list,
                                validate=validate.Length(max=10))
    on_unhealthy = fields.String(load_default="HOLD", validate=validate.OneOf(ON_UNHEALTHY),
                                 metadata={"description": "What an unhealthy check does: hold "
                                                          "the flag, or roll it back (both "
                                                          "notify)."})


def stage_order(stages: list[dict[str, Any]]) -> list[int]:
    """The request's stage indexes in pipeline order: by `order`, else as listed."""
    return sorted(range(len(stages)), key=lambda i: (_order_of(stages, i), i))


def _order_of(stages: list[dict[str, Any]], index: int) -> int:
    order = stages[index].get("order")
    return index if order is None else order


class _Definition(Shape):
    @validates_schema
    def _orders_differ(self, data: dict[str, Any], **kwargs: Any) -> None:
        stages = data.get("stages") or []
        seen: dict[int, int] = {}
        clashes = {}
        for index in range(len(stages)):
            order = _order_of(stages, index)
            if order in seen:
                clashes[index] = {"order": [f"Stage {seen[order]} has this order too."]}
            seen.setdefault(order, index)
        if clashes:
            raise ValidationError({"stages": clashes})


def Stages(**kwargs: Any) -> fields.List:  # noqa: N802  (field factories, used like classes)
    return fields.List(fields.Nested(PipelineStageInputSchema),
                       validate=validate.Length(max=MAX_STAGES), **kwargs)


def Version() -> fields.Integer:  # noqa: N802
    return fields.Integer(strict=True, load_default=None, validate=validate.Range(1, MAX_ID),
                          metadata={"description": "The version the change was made against "
                                                   "(409 if it moved on since); the current "
                                                   "one if absent."})


class PipelineCreateSchema(_Definition):
    name = fields.String(required=True, validate=TITLE)
    description = fields.String(load_default="", validate=DESCRIPTION)
    stages = Stages(load_default=list)


class PipelineReplaceSchema(PipelineCreateSchema):
    stages = Stages(required=True)
    version = Version()


class PipelinePatchSchema(_Definition):
    name = fields.String(validate=TITLE)
    description = fields.String(validate=DESCRIPTION)
    stages = Stages()
    version = Version()


class PipelinePublishSchema(Shape):
    version = Version()


class PipelineCloneSchema(Shape):
    name = fields.String(load_default=None, validate=TITLE,
                         metadata={"description": "\"<name> (copy)\" if absent."})


class PipelineFeatureSchema(Shape):
    feature_id = Id(required=True)


class PipelineFeaturesSchema(Shape):
    feature_ids = fields.List(Id(), required=True, validate=validate.Length(min=1, max=10_000))


# --- answers ------------------------------------------------------------------------------------

class PipelineActionSchema(PipelineActionInputSchema):
    id = fields.Integer(required=True)


class AddedFeatureSchema(Shape):
    feature_id = fields.Integer(required=True)
    name = fields.String(required=True)
    run_id = fields.Integer(required=True)


class RefusedFeatureSchema(Shape):
    feature_id = fields.Integer(required=True)
    name = fields.String(required=True, metadata={
        "description": "The flag's name, or #id for an id that is no flag of this project."})
    reason = fields.String(required=True, metadata={"description": "Why it cannot join."})


class PipelineFeaturesAddedSchema(Shape):
    """What a bulk add did: every flag that could join was added; the others say why not."""

    added = fields.List(fields.Nested(AddedFeatureSchema), required=True)
    refused = fields.List(fields.Nested(RefusedFeatureSchema), required=True)


class PipelineFlagRunSchema(Shape):
    """A flag's run through the pipeline."""

    id = fields.Integer(required=True, metadata={"description": "The feature's id."})
    name = fields.String(required=True)
    run_id = fields.Integer(required=True)
    status = fields.String(required=True,
                           validate=validate.OneOf(RUN_ACTIVE_STATUSES + RUN_ENDED_STATUSES))
    stage = fields.Integer(required=True, allow_none=True)
    entered_at = fields.String(required=True, allow_none=True)
    next_transition_at = fields.String(required=True, allow_none=True, metadata={
        "description": "When the stage's next step is due (null while paused, halted, "
                       "awaiting approval or ended)."})
    ended_at = fields.String(required=True, allow_none=True)
    end_reason = fields.String(required=True, allow_none=True)


class PipelineStageSchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    environment = fields.Integer(required=True, allow_none=True)
    order = fields.Integer(required=True)
    trigger = fields.Nested(PipelineTriggerSchema, required=True)
    actions = fields.List(fields.Nested(PipelineActionSchema), required=True)
    health_checks = fields.List(fields.Nested(PipelineHealthCheckSchema), required=True)
    on_unhealthy = fields.String(required=True, validate=validate.OneOf(ON_UNHEALTHY))
    features = fields.List(fields.Nested(PipelineFlagRunSchema), required=True, metadata={
        "description": "Flags in this stage now (the first 50 by name)."})
    features_count = fields.Integer(required=True)


class PipelineSummarySchema(Shape):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    project = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(("draft", "published")))
    version = fields.Integer(required=True)
    published_at = fields.String(required=True, allow_none=True)
    stages_count = fields.Integer(required=True)
    flags_in_flight = fields.Integer(required=True)


class PipelineSchema(PipelineSummarySchema):
    created_at = fields.String(required=True, allow_none=True)
    updated_at = fields.String(required=True, allow_none=True)
    stages = fields.List(fields.Nested(PipelineStageSchema), required=True)
    launched_count = fields.Integer(required=True)


# --- wire ↔ service ----------------------------------------------------------------------------

# The services' field names (update_stage / add_action input) as the wire spells them.
STAGE_WIRE_NAMES = {
    "environment_id": "environment", "trigger_type": "trigger.trigger_type",
    "wait_amount": "trigger.trigger_body.wait_for", "wait_unit": "trigger.trigger_body.wait_for",
}
ACTION_WIRE_NAMES = {
    "action_type": "action_type", "enabled": "action_body.enabled",
    "segment_id": "action_body.segment_id", "value": "action_body.value",
    "rollout_initial": "action_body.initial_percentage",
    "rollout_step": "action_body.increase_percentage",
    "rollout_every": "action_body.increase_every", "rollout_unit": "action_body.increase_every",
}
_SERVICE_PATH = re.compile(r"^stages\[(\d+)\]\.(?:actions\[(\d+)\]\.)?(\w+)$")


def stage_input(stage: dict[str, Any]) -> dict[str, Any]:
    """A loaded wire stage as the pipeline services take one (text-free: typed values)."""
    trigger = stage["trigger"]
    wait = (trigger.get("trigger_body") or {}).get("wait_for")
    return {"name": stage["name"], "environment_id": stage["environment"],
            "trigger_type": trigger["trigger_type"],
            "wait_amount": wait, "wait_unit": "seconds",
            "actions": [action_input(action) for action in stage["actions"]],
            "health_checks": stage.get("health_checks") or [],
            "on_unhealthy": stage.get("on_unhealthy") or "HOLD"}


def action_input(action: dict[str, Any]) -> dict[str, Any]:
    body = action.get("action_body") or {}
    data: dict[str, Any] = {"action_type": action["action_type"], "rollout_unit": "minutes"}
    if body.get("enabled") is not None:
        data["enabled"] = body["enabled"]
    if "segment_id" in body:
        data["segment_id"] = body["segment_id"]
    if "value" in body:
        value = body["value"]
        # The service reads text as the builder's form field does ("42" → 42); quoted, text
        # stays exactly the text that was sent.
        data["value"] = f'"{value}"' if isinstance(value, str) else value
    if "initial_percentage" in body:
        data["rollout_initial"] = body["initial_percentage"]
    if "increase_percentage" in body:
        data["rollout_step"] = body["increase_percentage"]
    if body.get("increase_every") is not None:
        data["rollout_every"] = body["increase_every"] // 60
    return data


def wire_path(path: str, listed: list[int]) -> str:
    """A service error path as the wire names it; `listed[p]` is the request's index of the
    stage at position p (`stages[0].environment_id` → `stages[2].environment`)."""
    match = _SERVICE_PATH.match(path)
    if match is None:
        return path
    position, action, field = int(match[1]), match[2], match[3]
    where = f"stages[{listed[position] if position < len(listed) else position}]"
    if action is None:
        return f"{where}.{STAGE_WIRE_NAMES.get(field, field)}"
    return f"{where}.actions[{action}].{ACTION_WIRE_NAMES.get(field, field)}"


def trigger_of(stage: PipelineStage) -> dict[str, Any]:
    if stage.trigger_type != "WAIT_FOR":
        return {"trigger_type": stage.trigger_type, "trigger_body": None}
    return {"trigger_type": "WAIT_FOR",
            "trigger_body": {"wait_for": duration_text(stage.wait_seconds)}}


def action_body_of(action: StageAction) -> dict[str, Any]:
    kind = action.action_type
    body: dict[str, Any] = {}
    if kind in ("TOGGLE_FEATURE", "TOGGLE_FEATURE_FOR_SEGMENT", "PHASED_ROLLOUT"):
        body["enabled"] = action.enabled
    if kind in ("TOGGLE_FEATURE_FOR_SEGMENT", "UPDATE_FEATURE_VALUE_FOR_SEGMENT"):
        body["segment_id"] = action.segment_id
    if kind == "PHASED_ROLLOUT":
        body.update(initial_percentage=action.rollout_initial,
                    increase_percentage=action.rollout_step,
                    increase_every=duration_text(action.rollout_interval_seconds))
    if action.sets_value:
        body["value"] = action.value
    return body
