"""Many runs at once: batches of due runs moved together (one transaction per group), and the
sweeper's drain of everything due or with an expired lease.
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import configure_mappers

from webapp import database, metrics
from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    Feature,
    PipelineRun,
    Segment,
    StageExecution,
)
from webapp.models.changes import Change
from webapp.orm import table_of
from webapp.services.actors import Actor
from webapp.services.platform import flag_changes
from webapp.services.platform.values import value_fits
from webapp.services.runs import approvals, calendar
from webapp.services.runs.planning import (
    ADVANCEABLE,
    BATCH_SIZE,
    EVENT_BY_PIPELINE,
    Bell,
    Cache,
    PipelineInfo,
    StageFailed,
    StageInfo,
    _is_postgres,
    load_pipeline,
    plan_stage_changes,
    start_writing,
    take_snapshots,
)
from webapp.services.runs.stage_effects import _describe, _Member, complete_stage
from webapp.services.runs.transition import transition

log = logging.getLogger(__name__)


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
    Each transaction decides at the moment it begins (or at `now` when given): the release
    calendar's answer is never older than one transaction, however many runs come.
    """
    cache = cache or Cache()
    report = report or Report()
    pending = list(pairs)
    while pending:
        chunk, pending = pending[:BATCH_SIZE], pending[BATCH_SIZE:]
        moment = now or clock_now()
        moved, singles = fire_batch(chunk, cache=cache, now=moment)
        for run_id, version, due_at in moved:
            report.moved += 1
            if due_at is None:
                continue  # launched
            if due_at <= moment:
                pending.append((run_id, version))  # the next stage fires at once
            else:
                report.bells.append(Bell(run_id, version, due_at))
        for run_id, expected_version in singles:
            moment = now or clock_now()
            outcome, bell = transition(run_id, expected_version, cache=cache, now=moment)
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
        .where(database.in_(PipelineRun.id, expected))
        .order_by(PipelineRun.id)  # the runs' locks in id order (webapp/database.py)
    )
    if _is_postgres():
        query = query.with_for_update(of=PipelineRun, skip_locked=True)
    groups: dict[tuple[int, int], list[Any]] = {}
    gated: dict[int, bool] = {}  # environment id -> needs approvals (those runs go one by one)
    singles: list[tuple[int, int | None]] = []
    held: dict[int, list[Any]] = {}  # environment id -> due runs the release calendar holds
    memo = calendar.memo_for(cache)
    try:
        for row in db.session.execute(query):
            wanted = expected[row.id]
            if (row.ended_at is not None or row.status not in ADVANCEABLE or row.due_at is None
                    or (wanted is not None and wanted != row.version)):
                continue
            pipeline = cache.pipeline(row.pipeline_id)
            stage = pipeline.stages[row.stage_position]
            if row.due_at <= now and not calendar.is_open(stage.environment_id, now, memo):
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
        for environment_id, waiting in held.items():
            moved.extend(calendar.hold_batch(waiting, environment_id, now, memo) or [])
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

        memo[environment_id] = approvals.approvals_needed(environment_id) > 0
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
    items: list[tuple[Change, dict[str, Any]]] = []
    for row in rows:
        for change in plan_stage_changes(row, stage):
            assert change["kind"] != "rollout"  # a plain stage (fire_batch)
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
    execution = table_of(StageExecution)
    database.update_rows(execution, "run_id",
                         [{"run_id": r.id, "snapshot": snapshots[r.feature_id]} for r in rows],
                         execution.c.stage_id == stage.id, applied_at=now, completed_at=now)
    members = [_Member(r.id, r.feature_id, r.name, r.added_by_id) for r in rows]
    values = complete_stage(pipeline, stage, members, now, mark_completed=False)
    values.update(attempts=0, last_error=None, **calendar.NO_HOLD)
    # One compare-and-set for the whole group: (id, version) pairs as read under the lock.
    moved = database.compare_and_set_many(table_of(PipelineRun),
                                          [(r.id, r.version) for r in rows], **values)
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


def due_before(until: datetime, limit: int, *, now: datetime) -> tuple[list[int], datetime | None]:
    """In one read: up to `limit` runs due at `now`, and when the first of the others falls due
    if it does before `until` (`now` when more than `limit` are due), else None."""
    rows = db.session.execute(
        select(PipelineRun.id, PipelineRun.due_at)
        .where(PipelineRun.status.in_(ADVANCEABLE), PipelineRun.due_at < until)
        .order_by(PipelineRun.due_at).limit(limit + 1)).all()
    db.session.rollback()
    due = [row.id for row in rows[:limit] if row.due_at <= now]
    later = [row.due_at for row in rows[len(due):]]
    return due, (max(later[0], now) if later else None)


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


def warm_up() -> None:
    """The engine's reads, once, when a worker starts: compiling them (and configuring the ORM's
    mappers) was about a third of a fresh worker's first transition (~130 of ~400 ms on
    PostgreSQL), which a flag added first after a start waited for. Changes nothing."""
    configure_mappers()
    try:
        moment = clock_now()
        due_before(moment, 1, now=moment)
        pipeline_id = db.session.scalar(select(PipelineRun.pipeline_id).limit(1))
        if pipeline_id is not None:
            load_pipeline(pipeline_id)
    except SQLAlchemyError:  # the jobs report a database that is away; the worker still starts
        log.warning("could not warm the engine's reads up", exc_info=True)
    finally:
        db.session.rollback()
