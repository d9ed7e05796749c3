"""Gates: guarded stages whose health checks decide whether a flag goes on, holds, or rolls back.

A guarded stage applies its actions on entry, then the run is `watching` (or `rolling_out`) with
`due_at` = its next check, so the engine's drain, compare-and-set and sweeper drive it like any
waiting run. Each wake:

1. the checks that are due are asked, outside any lock (Prometheus over HTTP; alerts from the
   database);
2. one transaction takes the run's lock, checks its version is still the one read, writes each
   check's state and the decision it causes (advance, a rollout step, hold, roll back) and ends
   in the run's compare-and-set. A replayed job finds another version and decides nothing; audit
   entries carry keys with the run's version as a second guard.

Rules: a check is unhealthy after `failures_to_trip` failing answers in a row; an unreachable
source or a bad answer is "unknown": hold in place, never advance, never roll back. The stage
completes once every check was healthy for the whole bake (the stage's WAIT_FOR); a rollout step
goes up once every check was healthy for the whole step interval.
"""

import json
import logging
import math
import operator
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import insert, select

from webapp import metrics
from webapp.database import compare_and_set
from webapp.extensions import db
from webapp.models import Notification, PipelineRun
from webapp.models.health import (
    FiringAlert,
    HealthCheckState,
    ProjectIntegration,
    StageHealthCheck,
)
from webapp.orm import table_of
from webapp.services.actors import Actor
from webapp.services.governance import audit
from webapp.services.runs import calendar, controls, planning, stage_effects
from webapp.services.runs.planning import LEASE_GRACE, CheckInfo, Result

log = logging.getLogger(__name__)

# Prometheus must answer within this; a slow answer is "unknown" rather than a stuck worker.
QUERY_TIMEOUT_SECONDS = 2.0
# A check asked this much before its time counts as on time (RQ fires up to a second early).
EARLY_TOLERANCE = timedelta(milliseconds=500)
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
            "==": operator.eq, "!=": operator.ne}


# --- Entering the watch ---------------------------------------------------------------------------


def start_watching(ctx) -> dict[str, Any]:
    """A guarded stage's actions were just applied (engine's transaction): watch it. The first
    checks are due one interval from now (the product needs a moment to show the change)."""
    stage, moment = ctx.stage, ctx.now
    first = moment + timedelta(seconds=min(c.interval_seconds for c in stage.checks))
    values: dict[str, Any] = {"status": "watching", "due_at": first,
                              "lease_until": first + _grace(), "next_step_at": None}
    rollout = stage.rollout
    if rollout is not None and (rollout.rollout_initial or 0) < 100:
        values.update(status="rolling_out", rollout_percent=rollout.rollout_initial,
                      rollout_segment_id=ctx.segment_id,
                      next_step_at=moment + timedelta(
                          seconds=rollout.rollout_interval_seconds or 60))
    elif rollout is not None:
        # The whole rollout at once: finish it now, then bake at 100 %.
        tail = ctx_finish_rollout(ctx, rollout)
        values["_tail"] = tail
    return values


def ctx_finish_rollout(ctx, rollout):

    assert ctx.segment_id is not None
    return stage_effects._finish_rollout(ctx, ctx.segment_id, rollout.rollout_initial or 100)


def _grace() -> timedelta:

    return LEASE_GRACE


# --- One wake ------------------------------------------------------------------------------------


def watch(run_id: int, version: int, *, cache, now: datetime):
    """Ask the run's due checks, then decide in one transaction (see the module's docstring).
    Returns the engine's (outcome, bell)."""

    run = db.session.get(PipelineRun, run_id)
    if run is None or run.version != version:
        db.session.rollback()
        return "skipped", None
    pipeline = cache.pipeline(run.pipeline_id)
    stage = pipeline.stages[run.stage_position]
    flag = run.feature.name
    environment = stage.environment_name
    states = _states(run_id)
    due_checks = [c for c in stage.checks if _is_due(states.get(c.id), c, now)]
    integration = db.session.get(ProjectIntegration, pipeline.project_id)
    prometheus = (integration.prometheus_url, integration.prometheus_auth_header) \
        if integration and integration.prometheus_url else None
    db.session.rollback()
    # Outside any transaction: Prometheus may be slow or away.
    answers = {c.id: query_prometheus(prometheus, c, flag, environment)
               for c in due_checks if c.kind == "PROMETHEUS"}

    planning.start_writing()
    row = planning._load(run_id)
    if row is None:
        db.session.rollback()
        return "skipped", None
    run, feature_name, value_type = row
    if run.ended_at is not None or run.version != version or run.status not in (
            "watching", "rolling_out"):
        db.session.rollback()
        return "skipped", None
    ctx = planning._Ctx(run, feature_name, value_type, pipeline, stage, now)
    try:
        values = _decide(ctx, due_checks, answers)
    except Exception:
        db.session.rollback()
        raise
    if values is None:  # rolled back: the rollback did the run's compare-and-set
        db.session.commit()
        metrics.AUTO_ROLLBACKS.inc()
        return "moved", None
    tail = values.pop("_tail", None)
    values.update(attempts=0, last_error=values.get("last_error"), **calendar.NO_HOLD)
    if not compare_and_set(PipelineRun, run_id, version, **values):
        db.session.rollback()
        return "skipped", None
    if tail:
        tail()
    db.session.commit()
    due = values.get("due_at")
    return "moved", (None if due is None else planning.Bell(run_id, version + 1, due))


def _healthy_since(state: HealthCheckState | None) -> datetime:
    assert state is not None and state.healthy_since is not None  # every check is healthy
    return state.healthy_since


def _states(run_id: int) -> dict[int, HealthCheckState]:
    return {s.check_id: s for s in db.session.scalars(
        select(HealthCheckState).where(HealthCheckState.run_id == run_id))}


def _is_due(state: HealthCheckState | None, check: CheckInfo, now: datetime) -> bool:
    # Alerts are read from the database at every wake: the receiver wakes the run at once.
    if state is None or state.last_checked_at is None or check.kind == "ALERT":
        return True
    return now + EARLY_TOLERANCE >= state.last_checked_at + timedelta(
        seconds=check.interval_seconds)


def _decide(ctx, due_checks: list[CheckInfo], answers: dict[int, Result]) -> dict[str, Any] | None:
    """Write the due checks' results and return the run's new columns (None: rolled back)."""

    run, stage, now = ctx.run, ctx.stage, ctx.now
    states = _states(run.id)
    tripped: list[tuple[CheckInfo, Result]] = []
    for check in due_checks:
        result = answers.get(check.id) or _alert_result(ctx, check)
        state = states.get(check.id)
        if state is None:
            state = HealthCheckState(run_id=run.id, check_id=check.id, status="watching",
                                     consecutive_failures=0, evaluations=0)
            db.session.add(state)
            states[check.id] = state
        was_unhealthy = state.status == "failing" and (
            state.consecutive_failures >= check.failures_to_trip)
        state.evaluations += 1
        state.last_checked_at = now
        state.last_value = result.value
        state.last_detail = result.detail[:2000]
        metrics.GATE_CHECKS.labels(check.kind, result.status).inc()
        if result.status == "failing":
            state.consecutive_failures += 1
            state.status, state.healthy_since = "failing", None
            if state.consecutive_failures == check.failures_to_trip:
                _event(ctx, "HEALTH_CHECK_FAILED", check, result,
                       f"Health check {check.label} of {ctx.feature_name} failed "
                       f"{state.consecutive_failures} time(s) in a row: {result.detail} "
                       f"{ctx.where()}")
            if state.consecutive_failures >= check.failures_to_trip:
                tripped.append((check, result))
        elif result.status == "healthy":
            if was_unhealthy:
                _event(ctx, "HEALTH_CHECK_RECOVERED", check, result,
                       f"Health check {check.label} of {ctx.feature_name} recovered: "
                       f"{result.detail} {ctx.where()}")
            state.consecutive_failures = 0
            if state.status != "healthy" or state.healthy_since is None:
                state.healthy_since = now
            state.status = "healthy"
        else:  # unknown: the bake restarts, the failure count stays as it was
            state.status, state.healthy_since = "unknown", None
    db.session.flush()

    if tripped:
        check, result = tripped[0]
        reason = f"health check {check.label}: {result.detail}"
        if stage.on_unhealthy == "ROLL_BACK":
            _roll_back(ctx, check, result, reason)
            return None
        return _hold(ctx, check, result, reason)

    every = [states.get(c.id) for c in stage.checks]
    all_healthy = all(s is not None and s.status == "healthy" for s in every)
    next_check = min(
        (s.last_checked_at if s and s.last_checked_at else now) + timedelta(
            seconds=c.interval_seconds) for c, s in zip(stage.checks, every, strict=True))
    if all_healthy:
        since = max(_healthy_since(s) for s in every)
        if run.status == "rolling_out" and run.next_step_at is not None:
            # Healthy since the first check after the last step (the whole step interval).
            interval = timedelta(seconds=stage.rollout.rollout_interval_seconds or 60) - \
                timedelta(seconds=max(c.interval_seconds for c in stage.checks))
            if now + EARLY_TOLERANCE >= max(run.next_step_at, since + interval):
                values = stage_effects._step(ctx)
                if values.get("status") == "rolling_out":
                    values["next_step_at"] = values["due_at"]
                    values["due_at"] = min(next_check, values["due_at"])
                    values["lease_until"] = values["due_at"] + _grace()
                    return values
                return {**values, "next_step_at": None}
            step_at = max(run.next_step_at, since + interval)
            due = min(next_check, step_at)
            return {"due_at": due, "lease_until": due + _grace()}
        if run.status == "watching":
            bake = timedelta(seconds=stage.wait_seconds or 0) if stage.trigger_type == "WAIT_FOR" \
                else timedelta(0)
            if now >= since + bake - EARLY_TOLERANCE:
                return {**stage_effects._complete(ctx), "next_step_at": None}
            due = min(next_check, since + bake)
            return {"due_at": due, "lease_until": due + _grace()}
    # Watching, failing below the trip count, or unknown: hold in place, ask again later.
    return {"due_at": next_check, "lease_until": next_check + _grace()}


def _alert_result(ctx, check: CheckInfo) -> Result:
    """ALERT checks: failing while a firing alert of the project matches this run."""
    matching = [a for a in db.session.scalars(select(FiringAlert).where(
        FiringAlert.project_id == ctx.pipeline.project_id))
        if alert_matches(a.labels or {}, check, ctx.feature_name, ctx.pipeline.name,
                         ctx.stage.environment_name)]
    if matching:
        names = ", ".join(sorted({a.name or a.fingerprint for a in matching}))
        return Result("failing", float(len(matching)), f"{len(matching)} alert(s) firing: {names}")
    return Result("healthy", 0.0, "no matching alert firing")


def alert_matches(labels: dict[str, str], check: CheckInfo, flag: str, pipeline: str,
                  environment: str) -> bool:
    """An alert concerns the run when its railyard_* labels (where present) name this flag,
    pipeline and environment, it carries the check's selector, and it names at least one of
    them (an alert with none of these labels concerns no flag)."""
    named = {"railyard_flag": flag, "railyard_pipeline": pipeline,
             "railyard_environment": environment}
    for label, wanted in named.items():
        if label in labels and labels[label] != wanted:
            return False
    selector = check.selector or {}
    if any(labels.get(k) != v for k, v in selector.items()):
        return False
    return bool(selector) or "railyard_flag" in labels or "railyard_pipeline" in labels


def query_prometheus(prometheus: tuple[str, str] | None, check: CheckInfo, flag: str,
                     environment: str) -> Result:
    """Evaluate a PROMETHEUS check now. Never raises: anything but a clear number is unknown."""
    if prometheus is None:
        return Result("unknown", None, "no Prometheus URL in the project's integrations")
    url, auth = prometheus
    promql = render_query(check.query or "", flag, environment)
    request = urllib.request.Request(
        f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql}),
        headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(request, timeout=QUERY_TIMEOUT_SECONDS) as response:
            body = json.loads(response.read(1_000_000))
    except (OSError, ValueError) as error:  # URLError, timeouts, HTTP errors, bad JSON
        return Result("unknown", None, f"Prometheus unreachable: {error}"[:500])
    value = _single_value(body)
    if isinstance(value, str):
        return Result("unknown", None, value)
    threshold = check.threshold or 0.0  # every PROMETHEUS check has one (check_inputs)
    ok = _COMPARE[check.comparison or "<"](value, threshold)
    detail = f"{value:g} {'meets' if ok else 'breaks'} {check.comparison} {threshold:g}"
    return Result("healthy" if ok else "failing", value, detail)


def render_query(query: str, flag: str, environment: str) -> str:
    """Fill `{{ flag }}` and `{{ environment }}` (spaces optional); quotes are escaped for
    PromQL string literals."""

    def quoted(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"')

    query = re.sub(r"\{\{\s*flag\s*\}\}", lambda _m: quoted(flag), query)
    return re.sub(r"\{\{\s*environment\s*\}\}", lambda _m: quoted(environment), query)


def _single_value(body: Any) -> float | str:
    """The worst (largest) sample of a vector or a scalar; a string says why there is none."""
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        return f"Prometheus answered an error: {str(error)[:300]}"
    data = body.get("data") or {}
    kind = data.get("resultType")
    result: Any = data.get("result")  # whatever it is: a wrong shape is caught below
    try:
        if kind == "scalar":
            samples = [float(result[1])]
        elif kind == "vector":
            samples = [float(item["value"][1]) for item in result]
        else:
            return f"Prometheus answered a {kind}, not a number"
    except (TypeError, ValueError, KeyError, IndexError):
        return "Prometheus answered something that is not a number"
    samples = [s for s in samples if not math.isnan(s)]
    if not samples:
        return "no data for the query"
    return max(samples)


# --- Decisions ------------------------------------------------------------------------------------


def _event(ctx, event: str, check: CheckInfo, result: Result, message: str) -> None:
    audit.record(ctx.actor, event, message, project_id=ctx.pipeline.project_id,
                 environment_id=ctx.stage.environment_id, object_type="feature",
                 object_id=ctx.run.feature_id, object_label=ctx.feature_name,
                 after={"check_id": check.id, "kind": check.kind, "value": result.value,
                        "detail": result.detail},
                 pipeline_id=ctx.pipeline.id, feature_id=ctx.run.feature_id, run_id=ctx.run.id,
                 idempotency_key=f"run:{ctx.run.id}:check:{check.id}:{event}:v{ctx.run.version}")


def _hold(ctx, check: CheckInfo, result: Result, reason: str) -> dict[str, Any]:
    run = ctx.run
    message = (f"{ctx.feature_name} held in {ctx.stage.name} ({ctx.stage.environment_name}) of "
               f"pipeline {ctx.pipeline.name}: {reason}")
    _event(ctx, "RELEASE_PIPELINE_FEATURE_HELD", check, result, message)
    _notify(ctx, "flag_held", message)
    return {"status": "halted", "paused_status": run.status, "due_at": None,
            "lease_until": None, "last_error": f"Held by {reason}"[:2000]}


def _roll_back(ctx, check: CheckInfo, result: Result, reason: str) -> None:

    message = (f"{ctx.feature_name} rolled back automatically in {ctx.stage.name} "
               f"({ctx.stage.environment_name}) of pipeline {ctx.pipeline.name}: {reason}")
    controls.roll_back_locked(ctx.run, Actor.for_pipeline(ctx.pipeline.name),
                          event="RELEASE_PIPELINE_FEATURE_ROLLED_BACK_AUTOMATICALLY",
                          why=f": {reason}")
    _notify(ctx, "flag_rolled_back", message)


def _notify(ctx, kind: str, message: str) -> None:
    """Who added the flag and the pipeline's creator (its followers) hear of a gate decision."""
    recipients = sorted({u for u in (ctx.run.added_by_id, ctx.pipeline.created_by_id) if u})
    if not recipients:
        return
    link = f"/projects/{ctx.pipeline.project_id}/flags/{ctx.run.feature_id}"
    db.session.execute(insert(table_of(Notification)), [
        {"user_id": uid, "project_id": ctx.pipeline.project_id, "kind": kind,
         "message": message, "link": link, "created_at": ctx.now,
         "idempotency_key": f"gate:{kind}:run:{ctx.run.id}:v{ctx.run.version}:user:{uid}"}
        for uid in recipients])


# --- Read models (board, track) ------------------------------------------------------------------


@dataclass(frozen=True)
class CheckView:
    label: str
    kind: str
    status: str
    value: float | None
    detail: str
    checked_at: datetime | None


def check_views(run_ids: list[int]) -> dict[int, list[CheckView]]:
    """Each run's check states in its current stage, for cards and tracks (one query)."""
    if not run_ids:
        return {}
    rows = db.session.execute(
        select(PipelineRun.id, StageHealthCheck, HealthCheckState)
        .join(StageHealthCheck, StageHealthCheck.stage_id == PipelineRun.stage_id)
        .outerjoin(HealthCheckState, (HealthCheckState.check_id == StageHealthCheck.id)
                   & (HealthCheckState.run_id == PipelineRun.id))
        .where(PipelineRun.id.in_(run_ids))
        .order_by(PipelineRun.id, StageHealthCheck.position)).all()
    views: dict[int, list[CheckView]] = {}
    for run_id, check, state in rows:
        label = check.name or (check.query if check.kind == "PROMETHEUS" else "alert")
        views.setdefault(run_id, []).append(CheckView(
            label or "", check.kind, state.status if state else "watching",
            state.last_value if state else None, state.last_detail or "" if state else "",
            state.last_checked_at if state else None))
    return views
