"""What the engine knows before it moves a run: the pipeline's shape (stages, actions, checks)
as plain values, what a stage will change, the run's lock and its bell.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from webapp import database
from webapp.database import begin_immediate
from webapp.extensions import db
from webapp.models import (
    Environment,
    Feature,
    FeatureState,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    SegmentOverride,
    StageAction,
)
from webapp.models.health import (
    StageHealthCheck,
)
from webapp.services.actors import Actor
from webapp.services.runs import planning

log = logging.getLogger(__name__)

EVENT_BY_PIPELINE = "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE"
# "watching": a guarded stage's actions are applied; its health checks decide (runs/gates.py).
ADVANCEABLE = ("waiting", "rolling_out", "watching")
# A run whose bell should have rung this long ago is the sweeper's to drive.
LEASE_GRACE = timedelta(seconds=2)
MAX_ATTEMPTS = 5
# A failed attempt is retried after 2, 4, 8... seconds, never more than this.
BACKOFF_CAP_SECONDS = 60
BATCH_SIZE = 500


@dataclass(frozen=True)
class Bell:
    """A run that needs an advance at `due_at` (its current version, for the job id)."""

    run_id: int
    version: int
    due_at: datetime
    early: bool = False  # re-rung because a job fired before due_at


# --- The pipeline's shape, read once per batch (published pipelines do not change) ---------------


@dataclass(frozen=True)
class ActionInfo:
    id: int
    action_type: str
    enabled: bool | None
    value: Any
    sets_value: bool
    segment_id: int | None
    rollout_initial: int | None
    rollout_step: int | None
    rollout_interval_seconds: int | None


@dataclass(frozen=True)
class StageInfo:
    id: int
    position: int
    name: str
    environment_id: int
    environment_name: str
    trigger_type: str
    wait_seconds: int | None
    actions: tuple[ActionInfo, ...]
    # Health checks (planning.CheckInfo) and what an unhealthy one does: a guarded stage.
    checks: tuple[Any, ...] = ()
    on_unhealthy: str = "HOLD"

    @property
    def rollout(self) -> ActionInfo | None:
        return next((a for a in self.actions if a.action_type == "PHASED_ROLLOUT"), None)

    def wait(self) -> timedelta:
        if self.trigger_type == "WAIT_FOR":
            return timedelta(seconds=self.wait_seconds or 0)
        return timedelta(0)


@dataclass(frozen=True)
class PipelineInfo:
    id: int
    name: str
    project_id: int
    created_by_id: int | None
    stages: tuple[StageInfo, ...]


def load_pipeline(pipeline_id: int) -> PipelineInfo:
    pipeline = db.session.get(ReleasePipeline, pipeline_id)
    if pipeline is None:
        raise LookupError(f"pipeline {pipeline_id} not found")
    rows = db.session.execute(
        select(PipelineStage, Environment.name)
        .join(Environment, Environment.id == PipelineStage.environment_id)
        .where(PipelineStage.pipeline_id == pipeline_id)
        .order_by(PipelineStage.position)
    ).all()
    actions: dict[int, list[ActionInfo]] = {}
    for a in db.session.scalars(
        select(StageAction)
        .join(PipelineStage, PipelineStage.id == StageAction.stage_id)
        .where(PipelineStage.pipeline_id == pipeline_id)
        .order_by(StageAction.position)
    ):
        actions.setdefault(a.stage_id, []).append(ActionInfo(
            a.id, a.action_type, a.enabled, a.value, a.sets_value, a.segment_id,
            a.rollout_initial, a.rollout_step, a.rollout_interval_seconds))

    checks = planning.load_checks(pipeline_id)
    stages = tuple(
        StageInfo(s.id, s.position, s.name or f"Stage {s.position + 1}", s.environment_id, env_name,
                  s.trigger_type, s.wait_seconds, tuple(actions.get(s.id, ())),
                  checks.get(s.id, ()), s.on_unhealthy)
        for s, env_name in rows
    )
    return PipelineInfo(pipeline.id, pipeline.name, pipeline.project_id, pipeline.created_by_id,
                        stages)


@dataclass
class Cache:
    """Per-call memo of pipeline shapes and user emails (one job, one sweep)."""

    pipelines: dict[int, PipelineInfo] = field(default_factory=dict)
    # The release calendar's memo (runs/calendar/records.py's Memo; set by calendar.memo_for,
    # typed Any because the calendar imports this module).
    calendar_memo: Any = None

    def pipeline(self, pipeline_id: int) -> PipelineInfo:
        if pipeline_id not in self.pipelines:
            self.pipelines[pipeline_id] = load_pipeline(pipeline_id)
        return self.pipelines[pipeline_id]


# --- Planning: what a stage would change (pure: reads, never writes) ------------------------------


def plan_stage_changes(run: Any, stage: StageInfo) -> list[dict[str, Any]]:
    """The changes a stage's actions make to the run's flag, in order, as flag_changes change dicts.

    They are applied in this order, each seeing what the earlier ones did (`flag_changes`): a
    segment override created by a toggle action (TOGGLE_FEATURE_FOR_SEGMENT, or the hidden
    segment of a PHASED_ROLLOUT without a value) carries the flag's value in the stage's
    environment at that moment, one created by a value action (UPDATE_FEATURE_VALUE_FOR_SEGMENT)
    carries the flag's enabled state there at that moment; so `[TOGGLE_FEATURE on,
    UPDATE_FEATURE_VALUE_FOR_SEGMENT "beta"]` gives the segment (on, "beta"), never `null` or
    the state from before the stage.

    Each dict also carries `action_id` and `action_type`. A phased rollout is one change of kind
    "rollout" (the hidden segment does not exist yet) with its initial `percent`.
    """
    base = {"environment_id": stage.environment_id, "feature_id": run.feature_id}
    changes: list[dict[str, Any]] = []
    for action in stage.actions:
        tag = {"action_id": action.id, "action_type": action.action_type}
        kind = action.action_type
        if kind == "TOGGLE_FEATURE":
            changes.append({"kind": "state", **base, "enabled": bool(action.enabled), **tag})
        elif kind == "UPDATE_FEATURE_VALUE":
            changes.append({"kind": "state", **base, "value": action.value, **tag})
        elif kind == "TOGGLE_FEATURE_FOR_SEGMENT":
            changes.append({"kind": "override", **base, "segment_id": action.segment_id,
                            "enabled": bool(action.enabled), **tag})
        elif kind == "UPDATE_FEATURE_VALUE_FOR_SEGMENT":
            changes.append({"kind": "override", **base, "segment_id": action.segment_id,
                            "value": action.value, **tag})
        elif kind == "PHASED_ROLLOUT":
            change = {"kind": "rollout", **base, "percent": min(100, action.rollout_initial or 0),
                      "enabled": bool(action.enabled), **tag}
            if action.sets_value:
                change["value"] = action.value
            changes.append(change)
        else:
            raise ValueError(f"unknown action type {kind!r}")
    return changes


def rollout_rules(percent: int) -> list[dict[str, Any]]:
    return [{"type": "ALL", "rules": [], "conditions": [
        {"property": "", "operator": "PERCENTAGE_SPLIT", "value": str(percent)}]}]


# --- The run in a transition: its context, lock and bell ----------------------------------------


class StageFailed(Exception):
    """A stage cannot be applied as it stands (segment gone, value no longer fits the flag)."""


@dataclass
class _Ctx:
    run: PipelineRun
    feature_name: str
    value_type: str
    pipeline: PipelineInfo
    stage: StageInfo
    now: datetime
    segment_id: int | None = None  # the hidden rollout segment created by this transition
    change_request_id: int | None = None  # set when a committed change request applies the stage

    @property
    def actor(self) -> Actor:
        return Actor.for_pipeline(self.pipeline.name)

    def key(self, action_id: int | str, kind: str) -> str:
        return f"run:{self.run.id}:stage:{self.stage.id}:action:{action_id}:{kind}"

    def where(self) -> str:
        return (f"(pipeline {self.pipeline.name}, stage {self.stage.name}, "
                f"{self.stage.environment_name})")


def start_writing() -> None:
    """Begin this unit of work holding the writer lock. Whatever the session read before (an
    expired attribute refreshes in a plain deferred transaction) is dropped first: on SQLite a
    deferred reader that later writes fails at once when another writer got in between."""
    db.session.rollback()
    begin_immediate()


def _is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def _load(run_id: int):
    query = (
        select(PipelineRun, Feature.name, Feature.value_type)
        .join(Feature, Feature.id == PipelineRun.feature_id)
        .where(PipelineRun.id == run_id)
    )
    if _is_postgres():
        query = query.with_for_update(of=PipelineRun, skip_locked=True)
    return db.session.execute(query).first()


def _bell(run_id: int, version: int, due_at: datetime | None) -> Bell | None:
    return None if due_at is None else Bell(run_id, version, due_at)


# --- Snapshots (for rollback) ---------------------------------------------------------------------


def take_snapshots(feature_ids: list[int], environment_id: int) -> dict[int, dict[str, Any]]:
    """Each flag's state and segment overrides in one environment, as they are now."""
    snapshots: dict[int, dict[str, Any]] = {
        fid: {"environment_id": environment_id, "state": None, "overrides": []}
        for fid in feature_ids}
    for row in db.session.execute(
        select(FeatureState.feature_id, FeatureState.enabled, FeatureState.value).where(
            database.in_(FeatureState.feature_id, feature_ids),
            FeatureState.environment_id == environment_id)):
        snapshots[row.feature_id]["state"] = {"enabled": row.enabled, "value": row.value}
    for row in db.session.execute(
        select(SegmentOverride.feature_id, SegmentOverride.segment_id, SegmentOverride.enabled,
               SegmentOverride.value, SegmentOverride.priority)
        .where(database.in_(SegmentOverride.feature_id, feature_ids),
               SegmentOverride.environment_id == environment_id)
        .order_by(SegmentOverride.segment_id)):
        snapshots[row.feature_id]["overrides"].append(
            {"segment_id": row.segment_id, "enabled": row.enabled, "value": row.value,
             "priority": row.priority})
    return snapshots


def take_snapshot(feature_id: int, environment_id: int) -> dict[str, Any]:
    """The flag's state and segment overrides in one environment, as they are now."""
    return take_snapshots([feature_id], environment_id)[feature_id]


@dataclass(frozen=True)
class CheckInfo:
    id: int
    position: int
    kind: str
    name: str
    query: str | None
    comparison: str | None
    threshold: float | None
    interval_seconds: int
    failures_to_trip: int
    selector: dict[str, str] | None

    @property
    def label(self) -> str:
        return self.name or (f"query {self.query}" if self.kind == "PROMETHEUS" else "alert")


@dataclass(frozen=True)
class Result:
    status: str  # healthy | failing | unknown
    value: float | None
    detail: str


def load_checks(pipeline_id: int) -> dict[int, tuple[CheckInfo, ...]]:
    """Each stage's checks in order (the engine's pipeline shape)."""
    checks: dict[int, list[CheckInfo]] = {}
    for c in db.session.scalars(
        select(StageHealthCheck)
        .join(PipelineStage, PipelineStage.id == StageHealthCheck.stage_id)
        .where(PipelineStage.pipeline_id == pipeline_id)
        .order_by(StageHealthCheck.position)
    ):
        checks.setdefault(c.stage_id, []).append(CheckInfo(
            c.id, c.position, c.kind, c.name, c.query, c.comparison, c.threshold,
            c.interval_seconds, c.failures_to_trip, dict(c.selector) if c.selector else None))
    return {stage_id: tuple(items) for stage_id, items in checks.items()}
