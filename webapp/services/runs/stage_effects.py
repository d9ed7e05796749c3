"""A stage's effects on a run, inside the engine's transaction: apply one planned change, start,
step and finish a phased rollout, complete the stage and enter the next.
"""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update

from webapp import database
from webapp.extensions import db
from webapp.models import (
    Segment,
    StageExecution,
)
from webapp.models.changes import OverrideChange, PlannedChange, RolloutStart, StateChange
from webapp.orm import fit, table_of
from webapp.services.actors import Actor
from webapp.services.governance import audit, notifications, webhook_events
from webapp.services.platform import flag_changes
from webapp.services.runs.planning import (
    EVENT_BY_PIPELINE,
    LEASE_GRACE,
    PipelineInfo,
    StageFailed,
    StageInfo,
    _Ctx,
    rollout_rules,
)

log = logging.getLogger(__name__)


def _describe(change: PlannedChange) -> str:
    parts = []
    if "enabled" in change:
        parts.append("enabled" if change["enabled"] else "disabled")
    if "value" in change:
        parts.append(f"value set to {change['value']!r}")
    return " and ".join(parts)


def _apply_planned(ctx: _Ctx, change: PlannedChange) -> None:
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


def _start_rollout(ctx: _Ctx, change: RolloutStart) -> None:
    percent = change["percent"]
    segment = Segment(project_id=ctx.pipeline.project_id, is_system=True,
                      name=fit(Segment.name,
                               f"Phased rollout of {ctx.feature_name} (run {ctx.run.id})"),
                      description=f"Hidden: {ctx.where()}", rules=rollout_rules(percent))
    db.session.add(segment)
    db.session.flush()
    ctx.segment_id = segment.id
    override: OverrideChange = {"kind": "override", "environment_id": change["environment_id"],
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
    changed = database.changed(
        update(Segment).where(Segment.id == segment_id).values(rules=rollout_rules(new))
    )
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
    state: StateChange = {"kind": "state", "environment_id": ctx.stage.environment_id,
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
        execution = table_of(StageExecution)
        db.session.execute(
            execution.update()
            .where(database.in_(execution.c.run_id, [m.run_id for m in members]),
                   execution.c.stage_id == stage.id)
            .values(completed_at=now))
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
    database.insert_rows(table_of(StageExecution), [
        {"run_id": run_id, "stage_id": stage.id, "position": stage.position, "entered_at": now,
         "snapshot": {}} for run_id in run_ids])
    due = now + (timedelta(0) if stage.checks else stage.wait())  # guarded: the wait is the bake
    return {"stage_id": stage.id, "stage_position": stage.position, "status": "waiting",
            "entered_at": now, "due_at": due, "lease_until": due + LEASE_GRACE}
