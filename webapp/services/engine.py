"""The transition engine: runs move through their pipeline's stages, each action applied once.

The database decides, Redis only rings the bell. Every transition of a run is one transaction
that holds SQLite's write lock (or, on PostgreSQL, the run's row lock taken with
SKIP LOCKED) and ends in a compare-and-set on the run's `version`; a lost race writes nothing.
Pipeline audit entries carry an idempotency key under a unique constraint as a second guard.

Callers (jobs, the sweeper, views after a user action) get back `Bell`s: runs that need another
advance at `due_at`. Ringing them (enqueueing) is the jobs layer's business, never this one's.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from webapp import metrics
from webapp.clock import now as clock_now
from webapp.database import begin_immediate
from webapp.extensions import db
from webapp.models import (
    Environment,
    Feature,
    FeatureState,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    Segment,
    SegmentOverride,
    StageAction,
    StageExecution,
)
from webapp.services import audit, calendar, flag_changes, notifications, webhook_events
from webapp.services.actors import Actor

log = logging.getLogger(__name__)

EVENT_BY_PIPELINE = "FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE"
# "watching": a guarded stage's actions are applied; its health checks decide (services/gates.py).
ADVANCEABLE = ("waiting", "rolling_out", "watching")
# A run whose bell should have rung this long ago is the sweeper's to drive.
LEASE_GRACE = timedelta(seconds=2)
MAX_ATTEMPTS = 5
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
    # Health checks (gates.CheckInfo) and what an unhealthy one does: a guarded stage.
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
    from webapp.services import gates

    checks = gates.load_checks(pipeline_id)
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
    # The release calendar's schedules (stops and freezes are read afresh per transaction).
    calendar_memo: calendar.Memo = field(default_factory=calendar.Memo)

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


def value_fits(value_type: str, value: Any) -> bool:
    """Whether a stored action value has the flag's type (None always fits: "no value")."""
    if value is None:
        return True
    if value_type == "string":
        return isinstance(value, str)
    if value_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if value_type == "boolean":
        return isinstance(value, bool)
    return False


def rollout_rules(percent: int) -> list[dict[str, Any]]:
    return [{"type": "ALL", "rules": [], "conditions": [
        {"property": "", "operator": "PERCENTAGE_SPLIT", "value": str(percent)}]}]


# --- One transition -------------------------------------------------------------------------------


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


def transition(run_id: int, expected_version: int | None = None, *, cache: Cache | None = None,
               now: datetime | None = None) -> tuple[str, Bell | None]:
    """Advance one run by one step if it is due: apply the stage (or the next rollout step),
    then enter the next stage or launch. One transaction, ending in a compare-and-set.

    Returns (outcome, bell): outcome is "moved", "skipped" (ended, paused, another version),
    "early" (not due yet; the bell re-rings at due_at) or "failed" (recorded on the run).
    """
    cache = cache or Cache()
    now = now or clock_now()
    start_writing()
    row = _load(run_id)
    if row is None:
        db.session.rollback()
        return "skipped", None
    run, feature_name, value_type = row
    if (run.ended_at is not None or run.status not in ADVANCEABLE or run.due_at is None
            or (expected_version is not None and run.version != expected_version)):
        db.session.rollback()
        return "skipped", None
    if run.due_at > now:
        bell = Bell(run.id, run.version, run.due_at, early=True)
        db.session.rollback()
        return "early", bell
    version = run.version
    cache.calendar_memo.fresh()
    try:
        environment_id: int | None = \
            cache.pipeline(run.pipeline_id).stages[run.stage_position].environment_id
    except LookupError:  # recorded as a failure below
        environment_id = None
    hold = None if environment_id is None else calendar.hold_due_run(
        run, environment_id, now, cache.calendar_memo)
    if hold is not None:  # outside a window, frozen, or the line stopped: wait, apply nothing
        return _held(run, version, hold)
    if run.status in ("watching", "rolling_out"):
        from webapp.services import gates

        stage = cache.pipeline(run.pipeline_id).stages[run.stage_position]
        if stage.checks:  # a guarded stage: its checks decide (asked outside the write lock)
            db.session.rollback()
            return gates.watch(run_id, version, cache=cache, now=now)
    try:
        pipeline = cache.pipeline(run.pipeline_id)
        stage = pipeline.stages[run.stage_position]
        ctx = _Ctx(run, feature_name, value_type, pipeline, stage, now)
        values = _step(ctx) if run.status == "rolling_out" else _fire(ctx)
        tail = values.pop("_tail", None)
        values.update(version=version + 1, attempts=0, last_error=None, **calendar.NO_HOLD)
        moved = db.session.execute(
            update(PipelineRun)
            .where(PipelineRun.id == run.id, PipelineRun.version == version)
            .values(**values)
            .execution_options(synchronize_session=False)
        ).rowcount
        if moved != 1:  # someone else moved it: write nothing
            db.session.rollback()
            return "skipped", None
        if tail:
            tail()
        due_at = run.due_at
        db.session.commit()
        metrics.transitions_applied([due_at], clock_now())
        return "moved", _bell(run_id, version + 1, values.get("due_at"))
    except (StageFailed, LookupError, ValueError, IntegrityError) as error:
        db.session.rollback()
        return "failed", record_failure(run_id, version, str(error), now=now)


def _held(run: PipelineRun, version: int, values: dict[str, Any]) -> tuple[str, Bell | None]:
    """Compare-and-set a due run's hold (calendar.hold_due_run decided it and audited it)."""
    values["version"] = version + 1
    moved = db.session.execute(
        update(PipelineRun).where(PipelineRun.id == run.id, PipelineRun.version == version)
        .values(**values).execution_options(synchronize_session=False)).rowcount
    if moved != 1:
        db.session.rollback()
        return "skipped", None
    db.session.commit()
    return "held", _bell(run.id, version + 1, values.get("due_at"))


def _fire(ctx: _Ctx) -> dict[str, Any]:
    """The stage's trigger fired: snapshot, apply its actions, then roll out or complete."""
    run, stage = ctx.run, ctx.stage
    snapshot = take_snapshot(run.feature_id, stage.environment_id)
    changes = plan_stage_changes(run, stage)
    _check(ctx, changes)
    applied = apply_or_gate(ctx, changes)
    db.session.execute(
        update(StageExecution)
        .where(StageExecution.run_id == run.id, StageExecution.stage_id == stage.id)
        .values(snapshot=snapshot, applied_at=ctx.now)
    )
    if not applied:  # a change request holds the changes; the run waits for its commit
        return {"status": "awaiting_approval", "due_at": None, "lease_until": None}
    return _after_apply(ctx)


def _after_apply(ctx: _Ctx) -> dict[str, Any]:
    """The stage's changes are applied: start rolling out, or complete the stage."""
    stage = ctx.stage
    rollout = stage.rollout
    if stage.checks:
        from webapp.services import gates

        return gates.start_watching(ctx)
    if rollout is not None and (rollout.rollout_initial or 0) < 100:
        due = ctx.now + timedelta(seconds=rollout.rollout_interval_seconds or 60)
        return {"status": "rolling_out", "due_at": due, "lease_until": due + LEASE_GRACE,
                "rollout_percent": rollout.rollout_initial,
                "rollout_segment_id": ctx.segment_id}
    if rollout is not None:
        assert ctx.segment_id is not None
        tail = _finish_rollout(ctx, ctx.segment_id, rollout.rollout_initial or 100)
        return {**_complete(ctx), "_tail": tail}
    return _complete(ctx)


def _check(ctx: _Ctx, changes: list[dict[str, Any]]) -> None:
    for change in changes:
        if "value" in change and not value_fits(ctx.value_type, change["value"]):
            raise StageFailed(f"The value {change['value']!r} of stage {ctx.stage.name} no longer "
                              f"fits the flag's type ({ctx.value_type}).")
        if change["kind"] == "override":
            found = db.session.scalar(select(Segment.id).where(
                Segment.id == change["segment_id"], Segment.project_id == ctx.pipeline.project_id))
            if found is None:
                raise StageFailed(f"The segment of stage {ctx.stage.name} no longer exists.")


def apply_or_gate(ctx: _Ctx, changes: list[dict[str, Any]]) -> bool:
    """Apply the stage's planned changes now (True), or, when the stage's environment needs
    approvals, open a change request holding exactly `changes` and apply nothing (False).
    """
    from webapp.services import change_requests

    if change_requests.approvals_needed(ctx.stage.environment_id) > 0:
        change_requests.open_for_stage(
            run=ctx.run, pipeline_name=ctx.pipeline.name, stage_id=ctx.stage.id,
            stage_name=ctx.stage.name, environment_id=ctx.stage.environment_id,
            feature_name=ctx.feature_name, changes=changes, now=ctx.now)
        return False
    for change in changes:
        _apply_planned(ctx, change)
    return True


def commit_approved(run_id: int, stage_id: int, changes: list[dict[str, Any]], *,
                    change_request_id: int, now: datetime) -> Bell | None:
    """Apply a committed change request's `changes` to its run waiting for approval in
    `stage_id`, through the stage's own code path (audit entries name the change request),
    then roll out or complete the stage, ending in the run's compare-and-set.

    Runs in the caller's transaction (the caller holds the writer lock and commits). Raises
    StageFailed when the run is not awaiting approval in that stage or moved meanwhile.
    """
    row = _load(run_id)
    if row is None:
        raise StageFailed("The flag's run is busy; try again.")
    run, feature_name, value_type = row
    if run.ended_at is not None or run.status != "awaiting_approval" or run.stage_id != stage_id:
        raise StageFailed("The flag is no longer waiting for this change request.")
    version = run.version
    pipeline = load_pipeline(run.pipeline_id)
    ctx = _Ctx(run, feature_name, value_type, pipeline, pipeline.stages[run.stage_position], now,
               change_request_id=change_request_id)
    _check(ctx, changes)
    for change in changes:
        _apply_planned(ctx, change)
    values = _after_apply(ctx)
    tail = values.pop("_tail", None)
    values.update(version=version + 1, attempts=0, last_error=None, **calendar.NO_HOLD)
    moved = db.session.execute(
        update(PipelineRun)
        .where(PipelineRun.id == run.id, PipelineRun.version == version)
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        raise StageFailed("The flag moved on meanwhile; look again.")
    if tail:
        tail()
    return _bell(run_id, version + 1, values.get("due_at"))


def _describe(change: dict[str, Any]) -> str:
    parts = []
    if "enabled" in change:
        parts.append("enabled" if change["enabled"] else "disabled")
    if "value" in change:
        parts.append(f"value set to {change['value']!r}")
    return " and ".join(parts)


def _apply_planned(ctx: _Ctx, change: dict[str, Any]) -> None:
    if change["kind"] == "rollout":
        _start_rollout(ctx, change)
        return
    target = "for everyone" if change["kind"] == "state" else f"for segment #{change['segment_id']}"
    flag_changes.apply_change(
        change, ctx.actor, project_id=ctx.pipeline.project_id, event_type=EVENT_BY_PIPELINE,
        message=f"{ctx.feature_name} {_describe(change)} {target} {ctx.where()}",
        object_label=ctx.feature_name, idempotency_key=ctx.key(change["action_id"], "apply"),
        pipeline_id=ctx.pipeline.id, run_id=ctx.run.id, change_request_id=ctx.change_request_id,
    )


def _start_rollout(ctx: _Ctx, change: dict[str, Any]) -> None:
    percent = change["percent"]
    segment = Segment(project_id=ctx.pipeline.project_id, is_system=True,
                      name=f"Phased rollout of {ctx.feature_name} (run {ctx.run.id})"[:255],
                      description=f"Hidden: {ctx.where()}", rules=rollout_rules(percent))
    db.session.add(segment)
    db.session.flush()
    ctx.segment_id = segment.id
    override = {"kind": "override", "environment_id": change["environment_id"],
                "feature_id": change["feature_id"], "segment_id": segment.id,
                "enabled": change["enabled"], "priority": -1}
    if "value" in change:
        override["value"] = change["value"]
    before, after = flag_changes.write_target(override)
    flag_changes.bump_revision(change["environment_id"])
    audit.record(
        ctx.actor, "PHASED_ROLLOUT_STATE_CREATED",
        f"Phased rollout of {ctx.feature_name} started at {percent}% "
        f"({_describe(change)}) {ctx.where()}",
        project_id=ctx.pipeline.project_id, environment_id=change["environment_id"],
        object_type="segment_override", object_id=ctx.run.feature_id,
        object_label=ctx.feature_name, before=before,
        after={**(after or {}), "percent": percent, "segment_id": segment.id},
        pipeline_id=ctx.pipeline.id, feature_id=ctx.run.feature_id, run_id=ctx.run.id,
        change_request_id=ctx.change_request_id,
        idempotency_key=ctx.key(change["action_id"], "rollout-created"),
    )
    webhook_events.flag_changed(ctx.actor, ctx.pipeline.project_id, [
        (override, before, after, ctx.key(change["action_id"], "rollout-created"))])


def _step(ctx: _Ctx) -> dict[str, Any]:
    """A rollout interval passed: raise the split by its step, or finish at 100 %."""
    rollout = ctx.stage.rollout
    segment_id, old = ctx.run.rollout_segment_id, ctx.run.rollout_percent or 0
    if rollout is None or segment_id is None:
        raise StageFailed(f"Stage {ctx.stage.name} has no rollout in progress.")
    new = min(100, old + (rollout.rollout_step or 100))
    changed = db.session.execute(
        update(Segment).where(Segment.id == segment_id).values(rules=rollout_rules(new))
    ).rowcount
    if not changed:
        raise StageFailed(f"The hidden rollout segment of stage {ctx.stage.name} vanished.")
    flag_changes.bump_revision(ctx.stage.environment_id)
    audit.record(
        ctx.actor, "PHASED_ROLLOUT_STATE_UPDATED",
        f"Phased rollout of {ctx.feature_name} raised from {old}% to {new}% {ctx.where()}",
        project_id=ctx.pipeline.project_id, environment_id=ctx.stage.environment_id,
        object_type="segment", object_id=segment_id, object_label=ctx.feature_name,
        before={"percent": old}, after={"percent": new}, pipeline_id=ctx.pipeline.id,
        feature_id=ctx.run.feature_id, run_id=ctx.run.id,
        idempotency_key=ctx.key(rollout.id, f"rollout-{new}"),
    )
    if new < 100:
        due = ctx.now + timedelta(seconds=rollout.rollout_interval_seconds or 60)
        return {"status": "rolling_out", "due_at": due, "lease_until": due + LEASE_GRACE,
                "rollout_percent": new}
    tail = _finish_rollout(ctx, segment_id, new)
    return {**_complete(ctx), "_tail": tail}


def _finish_rollout(ctx: _Ctx, segment_id: int, percent: int):
    """At 100 %: the environment default takes the rolled-out state; the hidden segment goes.

    Returns the segment deletion, run after the run row stops pointing at it.
    """
    rollout = ctx.stage.rollout
    assert rollout is not None
    state = {"kind": "state", "environment_id": ctx.stage.environment_id,
             "feature_id": ctx.run.feature_id, "enabled": bool(rollout.enabled)}
    if rollout.sets_value:
        state["value"] = rollout.value
    flag_changes.apply_change(
        state, ctx.actor, project_id=ctx.pipeline.project_id, event_type=EVENT_BY_PIPELINE,
        message=f"Phased rollout of {ctx.feature_name} reached {percent}%: "
                f"{_describe(state)} for everyone {ctx.where()}",
        object_label=ctx.feature_name, idempotency_key=ctx.key(rollout.id, "apply"),
        pipeline_id=ctx.pipeline.id, run_id=ctx.run.id,
    )
    flag_changes.apply_change(
        {"kind": "remove_override", "environment_id": ctx.stage.environment_id,
         "feature_id": ctx.run.feature_id, "segment_id": segment_id},
        ctx.actor, project_id=ctx.pipeline.project_id, event_type="PHASED_ROLLOUT_STATE_UPDATED",
        message=f"Phased rollout of {ctx.feature_name} complete: hidden segment removed "
                f"{ctx.where()}",
        object_label=ctx.feature_name, idempotency_key=ctx.key(rollout.id, "rollout-removed"),
        pipeline_id=ctx.pipeline.id, run_id=ctx.run.id,
    )

    def _delete_segment() -> None:
        db.session.execute(delete(Segment).where(Segment.id == segment_id, Segment.is_system))

    return _delete_segment


def _complete(ctx: _Ctx) -> dict[str, Any]:
    """The stage is done: notify, then enter the next stage or launch."""
    member = _Member(ctx.run.id, ctx.run.feature_id, ctx.feature_name, ctx.run.added_by_id)
    return complete_stage(ctx.pipeline, ctx.stage, [member], ctx.now)


@dataclass(frozen=True)
class _Member:
    """What completing a stage needs to know about one run."""

    run_id: int
    feature_id: int
    feature_name: str
    added_by_id: int | None


def complete_stage(pipeline: PipelineInfo, stage: StageInfo, members: list[_Member],
                   now: datetime, *, mark_completed: bool = True) -> dict[str, Any]:
    """Runs that finished `stage`: mark it completed (unless the caller did), notify, then
    enter the next stage (or launch). Set-based for batches. Returns the run columns to
    compare-and-set (the same for every member)."""
    if mark_completed:
        execution = StageExecution.__table__
        db.session.execute(
            execution.update()
            .where(execution.c.run_id == bindparam("_run"), execution.c.stage_id == stage.id)
            .values(completed_at=now),
            [{"_run": m.run_id} for m in members])
    notifications.stage_completed([
        {"run_id": m.run_id, "stage_id": stage.id, "feature_id": m.feature_id,
         "recipients": (m.added_by_id, pipeline.created_by_id),
         "message": f"{m.feature_name} completed stage {stage.name} ({stage.environment_name}) "
                    f"of pipeline {pipeline.name}."}
        for m in members], project_id=pipeline.project_id)
    cleared = {"rollout_percent": None, "rollout_segment_id": None}
    _announce_stage(pipeline, stage, members)
    if stage.position + 1 >= len(pipeline.stages):
        audit.record_many(Actor.for_pipeline(pipeline.name), [
            {"event_type": "RELEASE_PIPELINE_FEATURE_LAUNCHED",
             "message": f"{m.feature_name} launched: it completed every stage of pipeline "
                        f"{pipeline.name}",
             "project_id": pipeline.project_id, "object_type": "feature",
             "object_id": m.feature_id, "object_label": m.feature_name,
             "pipeline_id": pipeline.id, "feature_id": m.feature_id, "run_id": m.run_id,
             "idempotency_key": f"run:{m.run_id}:launched"}
            for m in members])
        return {"status": "launched", "ended_at": now, "end_reason": "launched", "due_at": None,
                "lease_until": None, **cleared}
    return {**enter_stage([m.run_id for m in members], pipeline.stages[stage.position + 1], now),
            **cleared}


def _announce_stage(pipeline: PipelineInfo, stage: StageInfo, members: list[_Member]) -> None:
    """Webhooks hear that `stage` completed and, unless it was the last, the next was entered."""
    actor = Actor.for_pipeline(pipeline.name)
    webhook_events.stage_event("pipeline.stage_completed", actor, pipeline.project_id, stage.id, [
        (m.run_id, f"{m.feature_name} completed stage {stage.name} ({stage.environment_name}) "
                   f"of pipeline {pipeline.name}") for m in members])
    if stage.position + 1 < len(pipeline.stages):
        after = pipeline.stages[stage.position + 1]
        webhook_events.stage_event("pipeline.stage_entered", actor, pipeline.project_id, after.id, [
            (m.run_id, f"{m.feature_name} entered stage {after.name} ({after.environment_name}) "
                       f"of pipeline {pipeline.name}") for m in members])


def enter_stage(run_ids: list[int], stage: StageInfo, now: datetime) -> dict[str, Any]:
    """Record the runs' entry into `stage`; return the run columns that say so."""
    db.session.execute(insert(StageExecution.__table__), [
        {"run_id": run_id, "stage_id": stage.id, "position": stage.position, "entered_at": now,
         "snapshot": {}} for run_id in run_ids])
    due = now + (timedelta(0) if stage.checks else stage.wait())  # guarded: the wait is the bake
    return {"stage_id": stage.id, "stage_position": stage.position, "status": "waiting",
            "entered_at": now, "due_at": due, "lease_until": due + LEASE_GRACE}


# --- Snapshots (for rollback) ---------------------------------------------------------------------


def take_snapshots(feature_ids: list[int], environment_id: int) -> dict[int, dict[str, Any]]:
    """Each flag's state and segment overrides in one environment, as they are now."""
    snapshots: dict[int, dict[str, Any]] = {
        fid: {"environment_id": environment_id, "state": None, "overrides": []}
        for fid in feature_ids}
    for row in db.session.execute(
        select(FeatureState.feature_id, FeatureState.enabled, FeatureState.value).where(
            FeatureState.feature_id.in_(feature_ids),
            FeatureState.environment_id == environment_id)):
        snapshots[row.feature_id]["state"] = {"enabled": row.enabled, "value": row.value}
    for row in db.session.execute(
        select(SegmentOverride.feature_id, SegmentOverride.segment_id, SegmentOverride.enabled,
               SegmentOverride.value, SegmentOverride.priority)
        .where(SegmentOverride.feature_id.in_(feature_ids),
               SegmentOverride.environment_id == environment_id)
        .order_by(SegmentOverride.segment_id)):
        snapshots[row.feature_id]["overrides"].append(
            {"segment_id": row.segment_id, "enabled": row.enabled, "value": row.value,
             "priority": row.priority})
    return snapshots


def take_snapshot(feature_id: int, environment_id: int) -> dict[str, Any]:
    """The flag's state and segment overrides in one environment, as they are now."""
    return take_snapshots([feature_id], environment_id)[feature_id]


# --- Failures -------------------------------------------------------------------------------------


def record_failure(run_id: int, version: int, error: str, *, now: datetime) -> Bell | None:
    """Count a failed attempt (compare-and-set); retry later with back-off, halt after
    MAX_ATTEMPTS with the reason on the run (audited as RELEASE_PIPELINE_FEATURE_HALTED)."""
    start_writing()
    run = db.session.get(PipelineRun, run_id)
    if run is None or run.version != version:
        db.session.rollback()
        return None
    attempts = run.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "last_error": error[:2000],
                              "version": version + 1}
    if attempts >= MAX_ATTEMPTS:
        values.update(status="halted", paused_status=run.status, due_at=None, lease_until=None)
        pipeline = db.session.get(ReleasePipeline, run.pipeline_id)
        audit.record(
            Actor.for_pipeline(pipeline.name), "RELEASE_PIPELINE_FEATURE_HALTED",
            f"{run.feature.name} halted in pipeline {pipeline.name} after {attempts} attempts: "
            f"{error}",
            project_id=run.project_id, object_type="feature", object_id=run.feature_id,
            object_label=run.feature.name, pipeline_id=run.pipeline_id,
            feature_id=run.feature_id, run_id=run.id,
            idempotency_key=f"run:{run.id}:halted:v{version}",
        )
    else:
        due = now + timedelta(seconds=min(60, 2 ** attempts))
        values.update(due_at=due, lease_until=due + LEASE_GRACE)
    moved = db.session.execute(
        update(PipelineRun).where(PipelineRun.id == run_id, PipelineRun.version == version)
        .values(**values).execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        db.session.rollback()
        return None
    db.session.commit()
    log.warning("run %s failed (attempt %s): %s", run_id, attempts, error)
    return _bell(run_id, version + 1, values.get("due_at"))


# --- Many runs ------------------------------------------------------------------------------------


@dataclass
class Report:
    moved: int = 0
    skipped: int = 0
    failed: int = 0
    bells: list[Bell] = field(default_factory=list)

    def add(self, outcome: str, bell: Bell | None) -> None:
        if outcome == "moved":
            self.moved += 1
        elif outcome == "failed":
            self.failed += 1
        elif outcome == "skipped":
            self.skipped += 1
        if bell is not None:
            self.bells.append(bell)


def advance(run_id: int, expected_version: int | None = None, *, cache: Cache | None = None,
            now: datetime | None = None, report: Report | None = None) -> Report:
    """Advance one run as far as it is due now (a chain of ON_ENTER stages runs through).

    Refuses nothing: a run that is ended, paused, at another version or not due is left alone.
    Audits every action applied (see `transition`).
    """
    return advance_many([(run_id, expected_version)], now=now, cache=cache, report=report)


def advance_many(pairs: list[tuple[int, int | None]], *, now: datetime | None = None,
                 cache: Cache | None = None, report: Report | None = None) -> Report:
    """Advance runs (id, expected version or None) as far as each is due now.

    Runs waiting in plain stages go through `fire_batch`, many per transaction; rollout
    stages, runs fired early, and any run of a batch that failed go one by one (`transition`).
    """
    cache = cache or Cache()
    report = report or Report()
    moment = now or clock_now()
    pending = list(pairs)
    while pending:
        chunk, pending = pending[:BATCH_SIZE], pending[BATCH_SIZE:]
        moved, singles = fire_batch(chunk, cache=cache, now=moment)
        for run_id, version, due_at in moved:
            report.moved += 1
            if due_at is None:
                continue  # launched
            if due_at <= moment:
                pending.append((run_id, version))  # the next stage fires at once
            else:
                report.bells.append(Bell(run_id, version, due_at))
        for run_id, version in singles:
            outcome, bell = transition(run_id, version, cache=cache, now=moment)
            if outcome == "moved" and bell is not None and bell.due_at <= moment:
                report.moved += 1
                pending.append((bell.run_id, bell.version))
            else:
                report.add(outcome, bell)
    return report


def fire_batch(pairs: list[tuple[int, int | None]], *, cache: Cache, now: datetime
               ) -> tuple[list[tuple[int, int, datetime | None]], list[tuple[int, int | None]]]:
    """Fire the triggers of many runs waiting in plain stages (no rollout) in one transaction:
    snapshots, changes, audit entries, notifications and the compare-and-set of every run are
    set-based. Returns (id, new version, due_at or None) of the runs moved, and the (id, version)
    of runs to take one by
    one (rollout stages, early, values that no longer fit, or all of them if the batch failed).
    Runs that are ended, paused or at another version are dropped.
    """
    expected = dict(pairs)
    start_writing()
    query = (
        select(PipelineRun.id, PipelineRun.version, PipelineRun.status, PipelineRun.due_at,
               PipelineRun.ended_at, PipelineRun.pipeline_id, PipelineRun.stage_position,
               PipelineRun.feature_id, PipelineRun.added_by_id, PipelineRun.project_id,
               Feature.name, Feature.value_type)
        .join(Feature, Feature.id == PipelineRun.feature_id)
        .where(PipelineRun.id.in_(list(expected)))
        .order_by(PipelineRun.id)  # the runs' locks in id order (webapp/database.py)
    )
    if _is_postgres():
        query = query.with_for_update(of=PipelineRun, skip_locked=True)
    groups: dict[tuple[int, int], list[Any]] = {}
    gated: dict[int, bool] = {}  # environment id -> needs approvals (those runs go one by one)
    singles: list[tuple[int, int]] = []
    held: dict[int, list[Any]] = {}  # environment id -> due runs the release calendar holds
    cache.calendar_memo.fresh()
    try:
        for row in db.session.execute(query):
            wanted = expected[row.id]
            if (row.ended_at is not None or row.status not in ADVANCEABLE or row.due_at is None
                    or (wanted is not None and wanted != row.version)):
                continue
            pipeline = cache.pipeline(row.pipeline_id)
            stage = pipeline.stages[row.stage_position]
            if row.due_at <= now and not calendar.is_open(stage.environment_id, now,
                                                           cache.calendar_memo):
                held.setdefault(stage.environment_id, []).append(row)
                continue
            if (row.status != "waiting" or row.due_at > now or stage.rollout is not None
                    or stage.checks or not _plain_fits(stage, row.value_type)
                    or _gated(stage.environment_id, gated)):
                singles.append((row.id, row.version))
                continue
            groups.setdefault((pipeline.id, stage.position), []).append(row)
        moved: list[tuple[int, int, datetime | None]] = []
        for (pipeline_id, position), rows in groups.items():
            pipeline = cache.pipeline(pipeline_id)
            moved.extend(_fire_group(pipeline, pipeline.stages[position], rows, now))
        for environment_id, rows in held.items():
            moved.extend(calendar.hold_batch(rows, environment_id, now, cache.calendar_memo) or [])
        db.session.commit()
        metrics.transitions_applied([r.due_at for rows in groups.values() for r in rows],
                                    clock_now())
        return moved, singles
    except (StageFailed, LookupError, ValueError, IntegrityError) as error:
        db.session.rollback()
        log.warning("batch of %d runs failed (%s); taking them one by one", len(pairs), error)
        return [], [(run_id, version) for run_id, version in pairs]


def _gated(environment_id: int, memo: dict[int, bool]) -> bool:
    """Whether the environment needs approvals: its stages open change requests (one by one)."""
    if environment_id not in memo:
        from webapp.services import change_requests

        memo[environment_id] = change_requests.approvals_needed(environment_id) > 0
    return memo[environment_id]


def _plain_fits(stage: StageInfo, value_type: str) -> bool:
    """Whether every value the stage sets fits the flag (else the run goes one by one and fails
    with the reason recorded)."""
    return all(value_fits(value_type, a.value) for a in stage.actions
               if a.action_type in ("UPDATE_FEATURE_VALUE", "UPDATE_FEATURE_VALUE_FOR_SEGMENT"))


def _fire_group(pipeline: PipelineInfo, stage: StageInfo, rows: list[Any], now: datetime
                ) -> list[tuple[int, int, datetime | None]]:
    segment_ids = {a.segment_id for a in stage.actions if a.segment_id is not None}
    if segment_ids:
        found = set(db.session.scalars(select(Segment.id).where(
            Segment.id.in_(segment_ids), Segment.project_id == pipeline.project_id)))
        if found != segment_ids:
            raise StageFailed(f"A segment of stage {stage.name} no longer exists.")
    snapshots = take_snapshots([r.feature_id for r in rows], stage.environment_id)
    where = f"(pipeline {pipeline.name}, stage {stage.name}, {stage.environment_name})"
    items = []
    for row in rows:
        for change in plan_stage_changes(row, stage):
            target = ("for everyone" if change["kind"] == "state"
                      else f"for segment #{change['segment_id']}")
            items.append((change, {
                "message": f"{row.name} {_describe(change)} {target} {where}",
                "object_label": row.name, "run_id": row.id,
                "idempotency_key": f"run:{row.id}:stage:{stage.id}:action:{change['action_id']}:"
                                   "apply",
            }))
    flag_changes.apply_changes(items, Actor.for_pipeline(pipeline.name),
                               project_id=pipeline.project_id, event_type=EVENT_BY_PIPELINE,
                               pipeline_id=pipeline.id)
    execution = StageExecution.__table__
    db.session.execute(
        execution.update()
        .where(execution.c.run_id == bindparam("_run"), execution.c.stage_id == stage.id)
        .values(snapshot=bindparam("_snapshot"), applied_at=now, completed_at=now),
        [{"_run": r.id, "_snapshot": snapshots[r.feature_id]} for r in rows])
    members = [_Member(r.id, r.feature_id, r.name, r.added_by_id) for r in rows]
    values = complete_stage(pipeline, stage, members, now, mark_completed=False)
    values.update(attempts=0, last_error=None, **calendar.NO_HOLD)
    # One compare-and-set for the whole group: (id, version) pairs as read under the lock.
    table = PipelineRun.__table__
    moved = db.session.execute(
        table.update()
        .where(tuple_(table.c.id, table.c.version).in_([(r.id, r.version) for r in rows]))
        .values(version=table.c.version + 1, **values)
    ).rowcount
    if moved != len(rows):  # cannot happen while we hold the lock; never write half a batch
        raise ValueError(f"compare-and-set moved {moved} of {len(rows)} runs")
    due = values.get("due_at")
    return [(r.id, r.version + 1, due) for r in rows]


def due_run_ids(limit: int, *, now: datetime | None = None, lease_expired: bool = False
                ) -> list[int]:
    """Runs whose trigger or rollout step is due; with `lease_expired`, only those whose bell
    should have rung a while ago (the sweeper's share). Several workers may read the same ids:
    each transition locks its run (SKIP LOCKED on PostgreSQL) and compares versions."""
    now = now or clock_now()
    query = select(PipelineRun.id).where(
        PipelineRun.status.in_(ADVANCEABLE), PipelineRun.due_at <= now)
    if lease_expired:
        query = query.where(or_(PipelineRun.lease_until.is_(None), PipelineRun.lease_until <= now))
    ids = list(db.session.scalars(query.order_by(PipelineRun.due_at).limit(limit)))
    db.session.rollback()
    return ids


def next_due_at() -> datetime | None:
    """When the next waiting or rolling-out run becomes due."""
    moment = db.session.scalar(select(func.min(PipelineRun.due_at)).where(
        PipelineRun.status.in_(ADVANCEABLE)))
    db.session.rollback()
    return moment


def drain(limit: int = 5000, *, now: datetime | None = None, cache: Cache | None = None) -> Report:
    """Advance every run that is due now, up to `limit` runs (the workers' batch)."""
    return advance_many([(run_id, None) for run_id in due_run_ids(limit, now=now)], now=now,
                        cache=cache)


def sweep(limit: int = 5000, *, now: datetime | None = None) -> Report:
    """Re-drive runs whose bell should have rung but did not (Redis flushed, worker killed,
    scheduled job lost or early): due runs whose lease expired. Safe in several copies."""
    ids = due_run_ids(limit, now=now, lease_expired=True)
    return advance_many([(run_id, None) for run_id in ids], now=now)

