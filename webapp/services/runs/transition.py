"""The transition engine: runs move through their pipeline's stages, each action applied once.

The database decides, Redis only rings the bell. Every transition of a run is one transaction
that holds SQLite's write lock (or, on PostgreSQL, the run's row lock taken with
SKIP LOCKED) and ends in a compare-and-set on the run's `version`; a lost race writes nothing.
Pipeline audit entries carry an idempotency key under a unique constraint as a second guard.

Callers (jobs, the sweeper, views after a user action) get back `Bell`s: runs that need another
advance at `due_at`. Ringing them (enqueueing) is the jobs layer's business, never this one's.
"""

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from webapp import metrics
from webapp.clock import now as clock_now
from webapp.database import compare_and_set
from webapp.extensions import db
from webapp.models import (
    PipelineRun,
    ReleasePipeline,
    Segment,
    StageExecution,
)
from webapp.models.changes import PlannedChange
from webapp.services.actors import Actor
from webapp.services.governance import audit
from webapp.services.platform.values import value_fits
from webapp.services.runs import approvals, calendar, gates
from webapp.services.runs.planning import (
    ADVANCEABLE,
    BACKOFF_CAP_SECONDS,
    LEASE_GRACE,
    MAX_ATTEMPTS,
    Bell,
    Cache,
    StageFailed,
    _bell,
    _Ctx,
    _load,
    load_pipeline,
    plan_stage_changes,
    start_writing,
    take_snapshot,
)
from webapp.services.runs.stage_effects import _apply_planned, _complete, _finish_rollout, _step

log = logging.getLogger(__name__)


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
    memo = calendar.memo_for(cache)
    try:
        environment_id: int | None = \
            cache.pipeline(run.pipeline_id).stages[run.stage_position].environment_id
    except LookupError:  # recorded as a failure below
        environment_id = None
    hold = None if environment_id is None else calendar.hold_due_run(
        run, environment_id, now, memo)
    if hold is not None:  # outside a window, frozen, or the line stopped: wait, apply nothing
        return _held(run, version, hold)
    if run.status in ("watching", "rolling_out"):

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
        values.update(attempts=0, last_error=None, **calendar.NO_HOLD)
        if not compare_and_set(PipelineRun, run.id, version, **values):
            # someone else moved it: write nothing
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
    if not compare_and_set(PipelineRun, run.id, version, **values):
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


def _check(ctx: _Ctx, changes: list[PlannedChange]) -> None:
    for change in changes:
        if "value" in change and not value_fits(ctx.value_type, change["value"]):
            raise StageFailed(f"The value {change['value']!r} of stage {ctx.stage.name} no longer "
                              f"fits the flag's type ({ctx.value_type}).")
        if change["kind"] == "override":
            found = db.session.scalar(select(Segment.id).where(
                Segment.id == change["segment_id"], Segment.project_id == ctx.pipeline.project_id))
            if found is None:
                raise StageFailed(f"The segment of stage {ctx.stage.name} no longer exists.")


def apply_or_gate(ctx: _Ctx, changes: list[PlannedChange]) -> bool:
    """Apply the stage's planned changes now (True), or, when the stage's environment needs
    approvals, open a change request holding exactly `changes` and apply nothing (False).
    """

    if approvals.approvals_needed(ctx.stage.environment_id) > 0:
        approvals.open_for_stage(
            run=ctx.run, pipeline_name=ctx.pipeline.name, stage_id=ctx.stage.id,
            stage_name=ctx.stage.name, environment_id=ctx.stage.environment_id,
            feature_name=ctx.feature_name, changes=changes, now=ctx.now)
        return False
    for change in changes:
        _apply_planned(ctx, change)
    return True


def commit_approved(run_id: int, stage_id: int | None, changes: list[PlannedChange], *,
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
    values.update(attempts=0, last_error=None, **calendar.NO_HOLD)
    if not compare_and_set(PipelineRun, run.id, version, **values):
        raise StageFailed("The flag moved on meanwhile; look again.")
    if tail:
        tail()
    return _bell(run_id, version + 1, values.get("due_at"))


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
    values: dict[str, Any] = {"attempts": attempts, "last_error": error[:2000]}
    if attempts >= MAX_ATTEMPTS:
        values.update(status="halted", paused_status=run.status, due_at=None, lease_until=None)
        pipeline = db.session.get_one(ReleasePipeline, run.pipeline_id)
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
        due = now + timedelta(seconds=min(BACKOFF_CAP_SECONDS, 2 ** attempts))
        values.update(due_at=due, lease_until=due + LEASE_GRACE)
    if not compare_and_set(PipelineRun, run_id, version, **values):
        db.session.rollback()
        return None
    db.session.commit()
    log.warning("run %s failed (attempt %s): %s", run_id, attempts, error)
    return _bell(run_id, version + 1, values.get("due_at"))
