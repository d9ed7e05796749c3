"""Holding runs and releasing them.

The engine asks `hold_due_run` / `hold_batch` before it applies anything (see
runs/transition.py and runs/sweep.py): a run due outside its environment's windows waits to the
next opening (its `due_at` moved, no busy loop); a run due during a freeze or a stopped line is
held in place (due_at NULL, its clock kept in `held_due_at` / `held_since`). A freeze or stop
holds every run in flight of its scope at once (`hold_in_flight`); `release_hold` gives them
back the time they had left, their due work spread (`spread_due_times`): at most
`release_per_second()` per second, all within `release_max_spread_seconds()`. Holds and
releases are compare-and-sets on the run's `version`, audited per run.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import and_, bindparam, case, or_, select, tuple_

from webapp.extensions import db
from webapp.models import Feature, PipelineRun, PipelineStage, Project, ReleasePipeline
from webapp.services.actors import Actor
from webapp.services.governance import audit
from webapp.services.runs.calendar.holds import hold_at
from webapp.services.runs.calendar.records import (
    EVENT_HELD,
    EVENT_RELEASED,
    Hold,
    HoldKind,
    Memo,
    Released,
    iso,
    when_text,
)
from webapp.services.runs.planning import LEASE_GRACE, Bell

# Statuses whose transitions the calendar holds (engine.ADVANCEABLE; repeated to avoid a cycle).
HELD_STATUSES = ("waiting", "rolling_out", "watching")
# Run columns that say "not held": merged into every compare-and-set that moves a run on.
NO_HOLD: dict[str, Any] = {"hold_kind": None, "hold_id": None, "held_since": None,
                           "held_due_at": None}
DEFAULT_RELEASE_PER_SECOND = 50
DEFAULT_RELEASE_MAX_SPREAD_SECONDS = 300
CHUNK = 2000  # ids per IN (...) list (SQLite binds at most 32766 parameters)


def release_per_second() -> int:
    value = current_app.config.get("CALENDAR_RELEASE_PER_SECOND") if has_app_context() else None
    return int(value or DEFAULT_RELEASE_PER_SECOND)


def release_max_spread_seconds() -> int:
    value = (current_app.config.get("CALENDAR_RELEASE_MAX_SPREAD_SECONDS")
             if has_app_context() else None)
    return int(value or DEFAULT_RELEASE_MAX_SPREAD_SECONDS)


def _in_scope(organisation_id: int, project_id: int | None) -> Any:
    if project_id is not None:
        return PipelineRun.project_id == project_id
    return PipelineRun.project_id.in_(
        select(Project.id).where(Project.organisation_id == organisation_id))


def hold_in_flight(kind: HoldKind, hold_id: int, organisation_id: int, project_id: int | None,
                   environment_ids: Sequence[int] | None, moment: datetime) -> int:
    """Hold every run in flight of the scope (in the environments given, else all) whose clock
    runs: one UPDATE (due_at → held_due_at, due_at NULL, version + 1), then an audit entry per
    flag. In the caller's transaction; returns how many runs it held."""
    table = PipelineRun.__table__
    conditions = [
        table.c.ended_at.is_(None), table.c.status.in_(HELD_STATUSES),
        table.c.due_at.is_not(None),
        or_(table.c.hold_kind.is_(None), table.c.hold_kind == "window"),
        _in_scope(organisation_id, project_id),
    ]
    if environment_ids is not None:
        conditions.append(table.c.stage_id.in_(
            select(PipelineStage.id).where(PipelineStage.environment_id.in_(environment_ids))))
    rows = db.session.execute(
        table.update().where(and_(*conditions))
        .values(hold_kind=kind, hold_id=hold_id, held_since=moment, held_due_at=table.c.due_at,
                due_at=None, lease_until=None, version=table.c.version + 1)
        .returning(table.c.id, table.c.version, table.c.feature_id, table.c.pipeline_id,
                   table.c.project_id)).all()
    _audit_runs(rows, EVENT_HELD, kind, hold_id, moment, held=True)
    return len(rows)


def _audit_runs(rows: Sequence[Any], event: str, kind: str, hold_id: int | None,
                moment: datetime, *, held: bool, note: str = "") -> None:
    """An audit entry per run held or released (set-based, idempotent per run version)."""
    if not rows:
        return
    features: dict[int, str] = {}
    pipelines: dict[int, str] = {}
    feature_ids = sorted({r.feature_id for r in rows})
    for start in range(0, len(feature_ids), CHUNK):
        features.update(db.session.execute(select(Feature.id, Feature.name).where(
            Feature.id.in_(feature_ids[start:start + CHUNK]))).all())
    pipelines.update(db.session.execute(select(ReleasePipeline.id, ReleasePipeline.name).where(
        ReleasePipeline.id.in_({r.pipeline_id for r in rows}))).all())
    what = {"window": "outside its deployment windows", "freeze": "by a freeze",
            "stop": "because the line is stopped"}[kind]
    verb = "held" if held else "resumed"
    audit.record_many(Actor("system", "Release calendar"), [
        {"event_type": event,
         "message": (f"{features.get(r.feature_id, '?')} {verb} in pipeline "
                     f"{pipelines.get(r.pipeline_id, '?')} "
                     + (what if held else f"(was held {what})") + note),
         "project_id": r.project_id, "object_type": "feature", "object_id": r.feature_id,
         "object_label": features.get(r.feature_id, ""), "pipeline_id": r.pipeline_id,
         "feature_id": r.feature_id, "run_id": r.id,
         "after": {"hold": kind, "hold_id": hold_id, "at": iso(moment)},
         "idempotency_key": f"run:{r.id}:{verb}:{kind}:v{r.version}"}
        for r in rows])


def spread_due_times(natural: Sequence[datetime], moment: datetime, *,
                     per_second: int | None = None, max_spread_seconds: int | None = None
                     ) -> list[datetime]:
    """Due times for released runs, in the order given: each at its natural time (the time it had
    left, counted from now) but no earlier than now, and never more than `per_second` in one
    second — raised when needed so that every run whose natural time has come lands within
    `max_spread_seconds` of now. Thousands released at once start over a bounded interval."""
    rate = per_second or release_per_second()
    spread = max_spread_seconds or release_max_spread_seconds()
    due_now = sum(1 for n in natural if n <= moment + timedelta(seconds=spread))
    rate = max(rate, math.ceil(due_now / spread) if spread else due_now or 1)
    order = sorted(range(len(natural)), key=lambda i: (natural[i], i))
    result: list[datetime] = [moment] * len(natural)
    base = moment.replace(microsecond=0)
    cursor, used = 0, 0  # seconds after `base`, runs placed in that second
    for i in order:
        want = max(natural[i], moment)
        second = int((want - base).total_seconds())
        if second > cursor:
            cursor, used = second, 0
        if used >= rate:
            cursor, used = cursor + 1, 0
        slot = base + timedelta(seconds=cursor) + timedelta(seconds=used / rate)
        result[i] = max(want, slot)
        used += 1
    return result


def release_hold(kind: HoldKind, hold_id: int, moment: datetime, memo: Memo | None = None
                 ) -> Released:
    """Release the runs a freeze or stop holds, unless something still holds them (another
    freeze, a stop: they are handed to it, keeping their clock). Released runs get back the
    time they had left, spread (`spread_due_times`); a guarded rollout's next step moves on by
    the time held. In the caller's transaction (locks the runs); returns the bells to ring."""
    memo = memo or Memo()
    table = PipelineRun.__table__
    query = (select(table.c.id, table.c.version, table.c.feature_id, table.c.pipeline_id,
                    table.c.project_id, table.c.held_since, table.c.held_due_at,
                    table.c.next_step_at, PipelineStage.environment_id)
             .join(PipelineStage, PipelineStage.id == table.c.stage_id)
             .where(table.c.hold_kind == kind, table.c.hold_id == hold_id,
                    table.c.ended_at.is_(None))
             .order_by(table.c.id))
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(of=table)
    rows = db.session.execute(query).all()
    result = Released()
    if not rows:
        return result
    handed: dict[tuple[str, int], list[Any]] = {}
    free: list[Any] = []
    by_env: dict[int, Hold | None] = {}
    for row in rows:
        env = row.environment_id
        if env not in by_env:
            by_env[env] = hold_at(env, moment, memo, windows=False)
        hold = by_env[env]
        if hold is None or (hold.kind == kind and hold.source_id == hold_id):
            if hold is None:
                free.append(row)
            continue  # still held by the same hold: stays as it is
        assert hold.source_id is not None
        handed.setdefault((hold.kind, hold.source_id), []).append(row)
    for (other_kind, other_id), group in handed.items():
        ids = [r.id for r in group]
        for start in range(0, len(ids), CHUNK):
            db.session.execute(
                table.update().where(table.c.id.in_(ids[start:start + CHUNK]))
                .values(hold_kind=other_kind, hold_id=other_id, version=table.c.version + 1))
        result.still_held += len(group)
    if free:
        naturals = []
        for row in free:
            left = (row.held_due_at - row.held_since) if row.held_due_at and row.held_since \
                else timedelta(0)
            naturals.append(moment + max(left, timedelta(0)))
        dues = spread_due_times(naturals, moment)
        params = []
        for row, due in zip(free, dues, strict=True):
            step = row.next_step_at
            if step is not None and row.held_since is not None:
                step = step + (moment - row.held_since)
            params.append({"_id": row.id, "_version": row.version, "_due": due,
                           "_lease": due + LEASE_GRACE, "_step": step})
            result.bells.append(Bell(row.id, row.version + 1, due))
        db.session.execute(
            table.update()
            .where(table.c.id == bindparam("_id"), table.c.version == bindparam("_version"))
            .values(due_at=bindparam("_due"), lease_until=bindparam("_lease"),
                    next_step_at=bindparam("_step"), version=table.c.version + 1, **NO_HOLD),
            params)
        result.resumed = len(free)
        result.first_due, result.last_due = min(dues), max(dues)
        versions = [_Row(r.id, r.version + 1, r.feature_id, r.pipeline_id, r.project_id)
                    for r in free]
        _audit_runs(versions, EVENT_RELEASED, kind, hold_id, moment, held=False)
    return result


@dataclass(frozen=True)
class _Row:
    id: int
    version: int
    feature_id: int
    pipeline_id: int
    project_id: int


def hold_values(run: Any, hold: Hold, moment: datetime) -> dict[str, Any]:
    """The run columns that hold a due run (`run` has due_at, held_due_at, hold_kind): a window
    moves due_at to the next opening; a freeze or stop holds it in place (due_at NULL)."""
    kept = run.held_due_at if run.hold_kind == "window" and run.held_due_at else run.due_at
    values: dict[str, Any] = {"hold_kind": hold.kind, "hold_id": hold.source_id,
                              "held_since": moment, "held_due_at": kept}
    if hold.kind == "window":
        values.update(due_at=hold.until, lease_until=None if hold.until is None
                      else hold.until + LEASE_GRACE)
    else:
        values.update(due_at=None, lease_until=None)
    return values


def memo_for(cache: Any) -> Memo:
    """The engine's per-call memo (planning.Cache.calendar_memo), its freezes and stops
    forgotten: a transaction reads them afresh."""
    if cache.calendar_memo is None:
        cache.calendar_memo = Memo()
    memo: Memo = cache.calendar_memo
    memo.fresh()
    return memo


def hold_due_run(run: Any, environment_id: int, moment: datetime, memo: Memo | None = None
                 ) -> dict[str, Any] | None:
    """Asked by the engine for a due run inside its write transaction: None when the stage may
    apply now, else the run's columns that hold it (and the audit entry is added). The engine
    compare-and-sets them."""
    hold = hold_at(environment_id, moment, memo)
    if hold is None:
        return None
    values = hold_values(run, hold, moment)
    _audit_runs([_Row(run.id, run.version + 1, run.feature_id, run.pipeline_id,
                      run.project_id)], EVENT_HELD, hold.kind, hold.source_id, moment, held=True,
                note=_until_note(hold))
    return values


def _until_note(hold: Hold) -> str:
    if hold.kind == "window":
        return f" until {when_text(hold.until)}" if hold.until else ""
    if hold.kind == "freeze" and hold.until:
        return f" until {when_text(hold.until)}: {hold.why}"
    return f": {hold.why}" if hold.why else ""


def hold_batch(rows: Sequence[Any], environment_id: int, moment: datetime,
               memo: Memo | None = None) -> list[tuple[int, int, datetime | None]] | None:
    """The engine's batch path: hold many due runs of one environment at once (rows carry id,
    version, due_at, feature_id, pipeline_id; the caller holds their locks). None when the stage
    may apply now; else the (id, new version, new due_at) of each, held by one UPDATE each
    (version compare-and-set) and audited."""
    hold = hold_at(environment_id, moment, memo)
    if hold is None:
        return None
    table = PipelineRun.__table__
    pairs = [(r.id, r.version) for r in rows]
    values: dict[str, Any] = {"hold_kind": hold.kind, "hold_id": hold.source_id,
                              "held_since": moment}
    if hold.kind == "window":
        values.update(due_at=hold.until,
                      lease_until=None if hold.until is None else hold.until + LEASE_GRACE)
    else:
        values.update(due_at=None, lease_until=None)
    db.session.execute(
        table.update().where(tuple_(table.c.id, table.c.version).in_(pairs))
        .values(held_due_at=case((table.c.hold_kind == "window", table.c.held_due_at),
                                 else_=table.c.due_at),
                version=table.c.version + 1, **values))
    project = {r.id: getattr(r, "project_id", None) for r in rows}
    _audit_runs([_Row(r.id, r.version + 1, r.feature_id, r.pipeline_id, project[r.id] or 0)
                 for r in rows], EVENT_HELD, hold.kind, hold.source_id, moment, held=True,
                note=_until_note(hold))
    return [(r.id, r.version + 1, values["due_at"]) for r in rows]
