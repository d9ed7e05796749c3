"""How a pipeline is described to people: an action or a wait in words (builder, board, track),
and the stages of a pipeline as the board shows them.
"""

from dataclasses import asdict, dataclass
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Select, bindparam, select

from webapp.durations import duration
from webapp.extensions import db
from webapp.models import (
    Environment,
    Feature,
    PipelineStage,
    ReleasePipeline,
    Segment,
    StageAction,
)
from webapp.services.pipelines.inputs import UNITS, _parse_value
from webapp.services.pipelines.timeline import human_duration
from webapp.services.platform.values import value_fits

ACTION_LABELS = {
    "TOGGLE_FEATURE": "Enable / disable for everyone",
    "UPDATE_FEATURE_VALUE": "Set the value for everyone",
    "TOGGLE_FEATURE_FOR_SEGMENT": "Enable / disable for a segment",
    "UPDATE_FEATURE_VALUE_FOR_SEGMENT": "Set the value for a segment",
    "PHASED_ROLLOUT": "Phased rollout",
}


def wait_parts(seconds: int | None) -> tuple[int | None, str]:
    """A wait in seconds as (amount, unit) in the largest unit that divides it (seconds for a
    wait of whole seconds set through the API)."""
    if not seconds:
        return None, "hours"
    for unit in ("days", "hours", "minutes"):
        if seconds % UNITS[unit] == 0:
            return seconds // UNITS[unit], unit
    return seconds, "seconds"


def show_value(value: Any) -> str:
    """A stored action value as the builder shows it, with its type spelled out."""
    if value is None:
        return "no value (clears it)"
    if isinstance(value, bool):
        return f"{'true' if value else 'false'} (boolean)"
    if isinstance(value, int):
        return f"{value} (integer)"
    return f"“{value}” (text)"


def value_as_input(action: StageAction) -> str:
    """The text that, typed into the value field, gives back the stored value."""
    value = action.value
    if not action.sets_value or value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if _parse_value(value) != value:  # a text that would read as a number or boolean
        return f'"{value}"'
    return value


def describe_action(action: StageAction) -> str:
    """An action in words: "Enable for everyone", "Set the value to 42 (integer) for Beta"..."""
    kind = action.action_type
    state = "Enable" if action.enabled else "Disable"
    segment = f"segment {action.segment.name}" if action.segment else "a segment (none chosen)"
    if kind == "TOGGLE_FEATURE":
        return f"{state} for everyone"
    if kind == "UPDATE_FEATURE_VALUE":
        return f"Set the value to {show_value(action.value)} for everyone"
    if kind == "TOGGLE_FEATURE_FOR_SEGMENT":
        return f"{state} for {segment}"
    if kind == "UPDATE_FEATURE_VALUE_FOR_SEGMENT":
        return f"Set the value to {show_value(action.value)} for {segment}"
    if kind == "PHASED_ROLLOUT":
        every = human_duration(action.rollout_interval_seconds or 0)
        text = (f"Phased rollout: {state.lower()} for {action.rollout_initial} %, "
                f"+{action.rollout_step} % every {every}")
        if action.sets_value:
            text += f", value {show_value(action.value)}"
        return text
    return f"Unknown action {kind}"


# --- The pipeline's shape, in words ------------------------------------------------------------


@dataclass(frozen=True)
class StageInfo:
    id: int
    position: int
    name: str
    environment: str
    approvals: int
    trigger_type: str
    wait_seconds: int
    actions: tuple[str, ...]
    rollout_step: int | None
    rollout_interval: int | None
    environment_id: int | None = None

    @property
    def trigger(self) -> str:
        if self.trigger_type == "WAIT_FOR":
            return f"after {short_duration(self.wait_seconds)}"
        return "at once"


def load_stages(pipeline_id: int) -> list[StageInfo]:
    """The pipeline's stages in words, read with one plain select (no ORM graph to build): a
    row per action, or one for a stage without actions."""
    stages: list[StageInfo] = []
    row_of: dict[int, Any] = {}
    actions: dict[int, list[Any]] = {}
    for row in db.session.connection().execute(_stages_statement(),
                                               {"pipeline_id": pipeline_id}).all():
        if row.id not in row_of:
            row_of[row.id], actions[row.id] = row, []
        if row.action_type is not None:
            segment = (SimpleNamespace(name=row.segment_name) if row.segment_name is not None
                       else None)
            actions[row.id].append(SimpleNamespace(
                action_type=row.action_type, enabled=row.enabled, value=row.value,
                sets_value=row.sets_value, rollout_initial=row.rollout_initial,
                rollout_step=row.rollout_step,
                rollout_interval_seconds=row.rollout_interval_seconds, segment=segment))
    for stage_id, row in row_of.items():
        own = actions[stage_id]
        rollout = next((a for a in own if a.action_type == "PHASED_ROLLOUT"), None)
        stages.append(StageInfo(
            id=row.id, position=row.position, name=row.name or f"Stage {row.position + 1}",
            environment=row.environment or "?", approvals=row.approvals or 0,
            trigger_type=row.trigger_type, wait_seconds=row.wait_seconds or 0,
            actions=tuple(describe_action(a) for a in own),
            rollout_step=rollout.rollout_step if rollout else None,
            rollout_interval=rollout.rollout_interval_seconds if rollout else None,
            environment_id=row.environment_id))
    return stages


@lru_cache(maxsize=1)
def _stages_statement() -> Select:
    """Built once: the board reads it on every poll."""
    return (
        select(PipelineStage.id, PipelineStage.position, PipelineStage.name,
               PipelineStage.trigger_type, PipelineStage.wait_seconds,
               PipelineStage.environment_id, Environment.name.label("environment"),
               Environment.minimum_change_request_approvals.label("approvals"),
               StageAction.action_type, StageAction.enabled, StageAction.value,
               StageAction.sets_value, StageAction.rollout_initial, StageAction.rollout_step,
               StageAction.rollout_interval_seconds, Segment.name.label("segment_name"))
        .outerjoin(Environment, Environment.id == PipelineStage.environment_id)
        .outerjoin(StageAction, StageAction.stage_id == PipelineStage.id)
        .outerjoin(Segment, Segment.id == StageAction.segment_id)
        .where(PipelineStage.pipeline_id == bindparam("pipeline_id"))
        .order_by(PipelineStage.position, PipelineStage.id, StageAction.position)
    )


def stage_snapshot(pipeline_id: int) -> list[dict[str, Any]]:
    """The pipeline's stages in words, as JSON to keep in a run that starts now."""
    return [{**asdict(stage), "actions": list(stage.actions)} for stage in load_stages(pipeline_id)]


def short_duration(seconds: float | None) -> str:
    """2d 3h, 5h 10m, 4m 30s, 12s (the two largest units): the board's cards."""
    return duration(seconds or 0, short=True) or "0s"


_TYPE_WORDS = {"string": "text", "integer": "whole-number", "boolean": "true/false"}


def check_values_fit(pipeline: ReleasePipeline, feature: Feature) -> list[str]:
    """Problems adding `feature` to `pipeline` would meet: actions whose value does not fit the
    flag's type (a value of None always fits: it clears the value). Empty when all fit."""
    problems = []
    for stage in pipeline.stages:
        for action in stage.actions:
            if not action.sets_value or action.value is None:
                continue
            if not value_fits(feature.value_type, action.value):
                problems.append(
                    f"Stage {stage.position + 1} ({stage.name}), action {action.position + 1} sets "
                    f"the value {show_value(action.value)}, but {feature.name} "
                    + ("takes no value." if feature.value_type == "none"
                       else f"takes {_TYPE_WORDS[feature.value_type]} values.")
                )
    return problems


def duration_words(seconds: float) -> str:
    """1d 2h 3m, 2h 3m 4s, 45s (every unit; no seconds past a day): time left on a run."""
    return duration(seconds, short=True, units=None, seconds_with_days=False) or "0s"
