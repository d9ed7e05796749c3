"""Flags in pipelines: add, remove, pause, resume, advance now, roll back, retry.

Each use case is one transaction holding the writer lock (BEGIN IMMEDIATE on SQLite, the run's
row lock on PostgreSQL) and ends in a compare-and-set on the run's version, so a user's click
and a worker's transition never interleave. Use cases that make the run due return `Bell`s;
the caller (a view) enqueues them after the commit.
"""

from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update

from webapp import database
from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    PipelineRun,
    Project,
    Segment,
    SegmentOverride,
    StageExecution,
)
from webapp.models.changes import Change, ChangeTarget, TargetState
from webapp.orm import fit, table_of
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, NotFound
from webapp.services.governance import audit
from webapp.services.pipelines import describe
from webapp.services.platform import flag_changes
from webapp.services.runs import approvals, calendar, flag_intake, planning
from webapp.services.runs.planning import Bell

PAUSABLE = ("waiting", "rolling_out", "watching")


# --- Guards -------------------------------------------------------------------------------------


# Shared with the bulk add (runs/flag_intake.py), which owns it.
_require_editor = flag_intake.require_editor


def _run_for_update(project_id: int, run_id: int, actor: Actor, *,
                    launched_ok: bool = False) -> PipelineRun:
    planning.start_writing()
    _require_editor(actor, project_id)
    query = select(PipelineRun).where(PipelineRun.id == run_id)
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(of=PipelineRun)
    run = db.session.scalar(query)
    if run is None or run.project_id != project_id:
        raise NotFound("This flag is not in that pipeline.")
    if run.ended_at is not None and not (launched_ok and can_roll_back(run)):
        raise Conflict(f"This run already ended ({run.end_reason or run.status}); nothing to do.")
    return run


def can_roll_back(run: PipelineRun) -> bool:
    """In flight, or launched and still the flag's latest run (nothing newer changed it)."""
    if run.ended_at is None:
        return True
    if run.status != "launched":
        return False
    latest = db.session.scalar(select(func.max(PipelineRun.id)).where(
        PipelineRun.feature_id == run.feature_id))
    return latest == run.id


def _cas(run: PipelineRun, **values: Any) -> None:
    """Compare-and-set the run's columns; a concurrent change makes the use case fail cleanly."""
    if not database.compare_and_set(PipelineRun, run.id, run.version, **values):
        db.session.rollback()
        raise Conflict("This flag moved on while you acted; look again and retry.")


def _audit(actor: Actor, run: PipelineRun, event: str, message: str, **extra: Any) -> None:
    audit.record(actor, event, message, project_id=run.project_id, object_type="feature",
                 object_id=run.feature_id, object_label=run.feature.name,
                 pipeline_id=run.pipeline_id, feature_id=run.feature_id, run_id=run.id, **extra)


# --- Adding flags ---------------------------------------------------------------------------------


def add_flags(project: Project, pipeline_id: int, feature_ids: list[int], actor: Actor
              ) -> list[Bell]:
    """Add flags to a published pipeline, all or nothing; each enters the first stage at once.

    Refuses (nothing added): a draft, deleted or foreign pipeline; no flags; a flag of another
    project; a flag already in a pipeline (Conflict); a flag whose type does not fit the
    pipeline's values (Invalid naming every such flag); viewers. The dashboard's and the API's
    bulk add use `flag_intake.add_flags`, which adds what it can and reports the rest. Audits
    RELEASE_PIPELINE_FEATURE_ADDED per flag. Returns the bells to ring.
    """
    return flag_intake.add_flags(project, pipeline_id, feature_ids, actor,
                                 all_or_nothing=True).bells


def add_flag(project: Project, pipeline_id: int, feature_id: int, actor: Actor) -> Bell:
    """Add one flag to a published pipeline (see `add_flags` for what is refused and audited)."""
    return add_flags(project, pipeline_id, [feature_id], actor)[0]


# --- Controlling a run ----------------------------------------------------------------------------


def remove(project: Project, run_id: int, actor: Actor) -> None:
    """Take the flag out of its pipeline; its states stay as they are. A rollout in progress
    stays at its percentage and its segment becomes visible so people can manage it.

    Refuses ended runs and viewers. Audits RELEASE_PIPELINE_FEATURE_REMOVED; closes the run's
    open change request (CHANGE_REQUEST_CLOSED).
    """
    run = _run_for_update(project.id, run_id, actor)
    now = clock_now()
    segment_id = run.rollout_segment_id
    _cas(run, status="removed", ended_at=now, end_reason="removed", due_at=None,
         lease_until=None, rollout_segment_id=None)
    if segment_id is not None:
        db.session.execute(update(Segment).where(Segment.id == segment_id).values(
            is_system=False, name=fit(Segment.name, f"Phased rollout of {run.feature.name} at "
                                                    f"{run.rollout_percent}% (stopped)")))
    _audit(actor, run, "RELEASE_PIPELINE_FEATURE_REMOVED",
           f"{run.feature.name} removed from release pipeline {run.pipeline.name}; "
           "its states stay as they are",
           before={"status": run.status, "stage": run.stage_position})
    approvals.close_for_run(run.id, actor, "the flag was removed from the pipeline")
    db.session.commit()


def pause(project: Project, run_id: int, actor: Actor) -> None:
    """Stop the run's clock: a wait keeps its remaining time for `resume`.

    Refuses runs that are not waiting or rolling out, ended runs, viewers.
    Audits RELEASE_PIPELINE_FEATURE_PAUSED.
    """
    run = _run_for_update(project.id, run_id, actor)
    if run.status not in PAUSABLE:
        raise Conflict("Only a waiting or rolling-out flag can be paused "
                       f"(this one is {run.status}).")
    now = clock_now()
    remaining = max(0.0, (run.due_at - now).total_seconds()) if run.due_at else 0.0
    if run.hold_kind in ("freeze", "stop") and run.held_due_at and run.held_since:
        # Held by the release calendar: its clock stopped when it was held.
        remaining = max(0.0, (run.held_due_at - run.held_since).total_seconds())
    _cas(run, status="paused", paused_status=run.status, paused_remaining_seconds=remaining,
         due_at=None, lease_until=None, **calendar.NO_HOLD)
    _audit(actor, run, "RELEASE_PIPELINE_FEATURE_PAUSED",
           f"{run.feature.name} paused in release pipeline {run.pipeline.name} "
           f"({describe.duration_words(remaining)} left)", after={"remaining_seconds": remaining})
    db.session.commit()


def resume(project: Project, run_id: int, actor: Actor) -> Bell:
    """Restart a paused run's clock with the time it had left.

    Refuses runs that are not paused, ended runs, viewers. Audits RELEASE_PIPELINE_FEATURE_RESUMED.
    """
    run = _run_for_update(project.id, run_id, actor)
    if run.status != "paused":
        raise Conflict(f"This flag is not paused (it is {run.status}).")
    due = clock_now() + timedelta(seconds=run.paused_remaining_seconds or 0)
    _cas(run, status=run.paused_status or "waiting", paused_status=None,
         paused_remaining_seconds=None, due_at=due, lease_until=due + planning.LEASE_GRACE)
    _audit(actor, run, "RELEASE_PIPELINE_FEATURE_RESUMED",
           f"{run.feature.name} resumed in release pipeline {run.pipeline.name}")
    bell = Bell(run.id, run.version + 1, due)
    db.session.commit()
    return bell


def advance_now(project: Project, run_id: int, actor: Actor) -> Bell:
    """Skip the remaining wait (or rollout interval): the stage's step becomes due now.

    Refuses paused, halted, awaiting-approval and ended runs, viewers.
    Audits RELEASE_PIPELINE_FEATURE_ADVANCED.
    """
    run = _run_for_update(project.id, run_id, actor)
    if run.status not in PAUSABLE:
        raise Conflict(f"Only a waiting or rolling-out flag can be advanced (this one is "
                       f"{run.status}).")
    now = clock_now()
    _cas(run, due_at=now, lease_until=now + planning.LEASE_GRACE)
    _audit(actor, run, "RELEASE_PIPELINE_FEATURE_ADVANCED",
           f"{run.feature.name} advanced now in release pipeline {run.pipeline.name} "
           f"(stage {run.stage.name if run.stage else run.stage_position + 1})",
           before={"due_at": run.due_at.isoformat() if run.due_at else None},
           after={"due_at": now.isoformat()})
    bell = Bell(run.id, run.version + 1, now)
    db.session.commit()
    return bell


def retry(project: Project, run_id: int, actor: Actor) -> Bell:
    """Try a halted run's step again, with a fresh attempt count.

    Refuses runs that are not halted, ended runs, viewers. Audits RELEASE_PIPELINE_FEATURE_RETRIED.
    """
    run = _run_for_update(project.id, run_id, actor)
    if run.status != "halted":
        raise Conflict(f"Only a halted flag can be retried (this one is {run.status}).")
    now = clock_now()
    _cas(run, status=run.paused_status if run.paused_status in PAUSABLE else "waiting",
         paused_status=None, due_at=now, lease_until=now + planning.LEASE_GRACE, attempts=0,
         last_error=None)
    _audit(actor, run, "RELEASE_PIPELINE_FEATURE_RETRIED",
           f"{run.feature.name} retried in release pipeline {run.pipeline.name}",
           before={"last_error": run.last_error})
    bell = Bell(run.id, run.version + 1, now)
    db.session.commit()
    return bell


def rollback(project: Project, run_id: int, actor: Actor) -> None:
    """Restore, in every environment the run changed, the flag's state and segment overrides
    as they were before the pipeline first changed them there; remove a hidden rollout segment;
    end the run as rolled back. A launched run can be rolled back too while it is the flag's
    latest run.

    Refuses other ended runs and viewers. Audits each restored state/override
    (FEATURE_STATE_ROLLED_BACK) and RELEASE_PIPELINE_FEATURE_ROLLED_BACK.
    """
    run = _run_for_update(project.id, run_id, actor, launched_ok=True)
    roll_back_locked(run, actor)
    db.session.commit()


def roll_back_locked(run: PipelineRun, actor: Actor, *, event: str =
                     "RELEASE_PIPELINE_FEATURE_ROLLED_BACK", why: str = "") -> None:
    """`rollback`'s changes inside the caller's unit of work (which holds the run's lock and
    commits): the gate's automatic rollback shares it. Raises Conflict if the run moved."""
    executions = db.session.scalars(
        select(StageExecution)
        .where(StageExecution.run_id == run.id, StageExecution.applied_at.is_not(None))
        .order_by(StageExecution.position)
    ).all()
    earliest: dict[int, dict[str, Any]] = {}
    for execution in executions:
        snapshot = execution.snapshot or {}
        if "environment_id" in snapshot:
            earliest.setdefault(snapshot["environment_id"], snapshot)
    segment_id = run.rollout_segment_id
    _cas(run, status="rolled_back", ended_at=clock_now(), end_reason="rolled_back",
         due_at=None, lease_until=None, rollout_segment_id=None)
    restored = 0
    for environment_id, snapshot in earliest.items():
        restored += _restore(run, environment_id, snapshot, actor)
    if segment_id is not None:
        db.session.execute(
            table_of(Segment).delete().where(Segment.id == segment_id, Segment.is_system))
    _audit(actor, run, event,
           f"{run.feature.name} rolled back{' automatically' if why else ''} and taken out of "
           f"release pipeline {run.pipeline.name} ({restored} change(s) restored){why}",
           before={"status": run.status, "stage": run.stage_position},
           idempotency_key=f"run:{run.id}:rolled-back")
    approvals.close_for_run(run.id, actor, "the flag was rolled back")


def _restore(run: PipelineRun, environment_id: int, snapshot: dict[str, Any], actor: Actor) -> int:
    feature_id = run.feature_id
    changes: list[Change] = []
    state = snapshot.get("state")
    base: ChangeTarget = {"environment_id": environment_id, "feature_id": feature_id}
    if state is not None:
        current = flag_changes.read_target({"kind": "state", **base})
        if current != state:
            changes.append({"kind": "state", **base, **state})
    wanted = {o["segment_id"]: o for o in snapshot.get("overrides", [])}
    current_overrides = {
        o.segment_id: {"enabled": o.enabled, "value": o.value, "priority": o.priority}
        for o in db.session.scalars(select(SegmentOverride).where(
            SegmentOverride.feature_id == feature_id,
            SegmentOverride.environment_id == environment_id))
    }
    for segment_id in current_overrides.keys() - wanted.keys():
        changes.append({"kind": "remove_override", **base, "segment_id": segment_id})
    existing_segments = set(db.session.scalars(
        select(Segment.id).where(Segment.id.in_(list(wanted)))))
    for segment_id, override in wanted.items():
        now_there = current_overrides.get(segment_id)
        target: TargetState = {"enabled": override["enabled"], "value": override["value"],
                               "priority": override["priority"]}
        if segment_id in existing_segments and now_there != target:
            changes.append({"kind": "override", **base, "segment_id": segment_id, **target})
    for change in changes:
        what = ("state" if change["kind"] == "state"
                else f"override of segment #{change['segment_id']}")
        flag_changes.apply_change(
            change, actor, project_id=run.project_id, event_type="FEATURE_STATE_ROLLED_BACK",
            message=f"{run.feature.name}: {what} restored by rolling back release pipeline "
                    f"{run.pipeline.name}",
            object_label=run.feature.name, pipeline_id=run.pipeline_id, run_id=run.id,
            idempotency_key=f"run:{run.id}:rollback:env:{environment_id}:{change['kind']}:"
                            f"{change.get('segment_id', '')}",
        )
    return len(changes)
