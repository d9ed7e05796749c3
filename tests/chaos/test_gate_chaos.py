"""Guarded stages under chaos: flags in stages with health checks while workers are SIGKILLed
and Redis is flushed, and an alert fires for half of them mid-run.

Every flag ends (launched or rolled back); a flag whose alert fired while it was in a guarded
stage is rolled back exactly once and completely (no state, override or hidden segment of the
pipeline left anywhere); the others launch.
"""

import os
import random
import time

import pytest
import redis
from sqlalchemy import func, select

from jobs import transitions
from webapp.extensions import db
from webapp.models import AuditEntry, FeatureState, PipelineRun, Segment, SegmentOverride
from webapp.models.health import StageHealthCheck
from webapp.services.actors import Actor
from webapp.services.runs import alerts, controls

pytestmark = pytest.mark.chaos
# All of them are in a guarded stage (Bake waits 6 s) when the alert fires at 3 s, however many.
FLAGS = int(os.environ.get("CHAOS_GATE_FLAGS", "60"))
DEADLINE = int(os.environ.get("CHAOS_DEADLINE", "150"))


def test_checks_failing_mid_run_roll_back_once_and_whole(
        app, make, project, editor, make_pipeline, envs, database_url, private_redis, fork_server):
    beta = make.segment(project, "Beta")
    pipeline = make_pipeline([
        {"env": "Development", "name": "Dev",
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Staging", "name": "Bake", "trigger": "WAIT_FOR", "wait": 6, "actions": [
            {"type": "TOGGLE_FEATURE", "enabled": True},
            {"type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": True, "segment_id": beta.id}]},
        {"env": "Production", "name": "Rollout", "actions": [
            {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 50, "step": 50,
             "interval": 2}]},
    ], name="Guarded chaos")
    for stage in pipeline.stages[:2]:
        stage.on_unhealthy = "ROLL_BACK"
        stage.checks.append(StageHealthCheck(position=0, kind="ALERT", name="pages",
                                             interval_seconds=1, failures_to_trip=1,
                                             selector={"severity": "page"}))
    flags = [make.feature(project, f"gated_{n}", commit=False) for n in range(FLAGS)]
    db.session.commit()
    ids = [f.id for f in flags]
    alerted = {f.name for f in flags[::2]}
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": private_redis,
           "SECRET_KEY": "chaos", "SWEEP_INTERVAL_SECONDS": "1"}
    workers = [fork_server.spawn("worker", env) for _ in range(3)]
    sweepers = [fork_server.spawn("sweeper", env) for _ in range(2)]
    conn = redis.Redis.from_url(private_redis)
    try:
        transitions.ring(controls.add_flags(project, pipeline.id, ids, Actor.for_user(editor)))
        started = time.monotonic()
        events = {"flush": (2, False), "alert": (3, False), "flush2": (5, False)}
        while True:
            time.sleep(1)
            elapsed = time.monotonic() - started
            victim = random.randrange(len(workers))
            fork_server.kill(workers[victim])
            workers[victim] = fork_server.spawn("worker", env)
            for name, (at, done) in events.items():
                if done or elapsed < at:
                    continue
                if name == "alert":
                    transitions.ring(alerts.receive_alerts(project.id, {"alerts": [
                        {"labels": {"alertname": "Errors", "railyard_flag": flag,
                                    "severity": "page"}} for flag in sorted(alerted)]}))
                else:
                    conn.flushall()
                events[name] = (at, True)
            db.session.rollback()
            ended = db.session.scalar(select(func.count()).select_from(PipelineRun).where(
                PipelineRun.ended_at.is_not(None)))
            if (ended == FLAGS and all(done for _, done in events.values())) \
                    or elapsed > DEADLINE:
                break
    finally:
        for pid in workers + sweepers:
            fork_server.kill(pid)

    db.session.rollback()
    rows = db.session.execute(select(PipelineRun.id, PipelineRun.feature_id, PipelineRun.status)
                              ).all()
    names = {f.id: f.name for f in flags}
    statuses = {names[fid]: status for _, fid, status in rows}
    assert set(statuses.values()) <= {"launched", "rolled_back"}, statuses
    assert all(statuses[n] == "launched" for n in names.values() if n not in alerted)
    rolled = {n for n, s in statuses.items() if s == "rolled_back"}
    assert rolled and rolled <= alerted

    keys = [k for (k,) in db.session.execute(
        select(AuditEntry.idempotency_key).where(AuditEntry.idempotency_key.is_not(None)))]
    assert len(keys) == len(set(keys))
    automatic = db.session.execute(
        select(AuditEntry.run_id, func.count()).where(
            AuditEntry.event_type == "RELEASE_PIPELINE_FEATURE_ROLLED_BACK_AUTOMATICALLY")
        .group_by(AuditEntry.run_id)).all()
    run_names = {rid: names[fid] for rid, fid, _ in rows}
    assert {run_names[r] for r, _ in automatic} == rolled
    assert all(count == 1 for _, count in automatic)

    rolled_ids = [fid for fid, n in names.items() if n in rolled]
    # Whole: nothing the pipeline turned on survives for a rolled-back flag, anywhere.
    assert db.session.scalar(select(func.count()).select_from(FeatureState).where(
        FeatureState.feature_id.in_(rolled_ids), FeatureState.enabled.is_(True))) == 0
    assert db.session.scalar(select(func.count()).select_from(SegmentOverride).where(
        SegmentOverride.feature_id.in_(rolled_ids))) == 0
    assert db.session.scalar(select(func.count()).select_from(Segment).where(
        Segment.is_system)) == 0
