"""The release calendar under chaos: flags move through a pipeline while the line is stopped and
lifted and a freeze starts and ends, and workers are SIGKILLed and Redis is FLUSHALLed.

Three real workers and two sweepers (the sweepers start and end the freeze from the database) run
against the test's file database and a private Redis. Every flag must launch; every action's
audit entry must exist exactly once; no stage may apply while the line is stopped (audit ids are
assigned in commit order) nor into Production while it is frozen; every hold is released.
"""

import os
import random
import time
from collections import Counter
from datetime import timedelta

import pytest
import redis
from sqlalchemy import func, select

from jobs import transitions
from webapp.clock import now
from webapp.extensions import db
from webapp.models import AuditEntry, FeatureState, PipelineRun, Segment
from webapp.services.actors import Actor
from webapp.services.runs import calendar, controls

pytestmark = pytest.mark.chaos
FLAGS = int(os.environ.get("CHAOS_CALENDAR_FLAGS", "150"))
DEADLINE = int(os.environ.get("CHAOS_DEADLINE", "150"))
APPLIED = ("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", "PHASED_ROLLOUT_STATE_CREATED",
           "PHASED_ROLLOUT_STATE_UPDATED")


def test_holds_and_releases_are_exactly_once_under_kills_and_flushes(
        app, make, project, editor, admin, make_pipeline, envs, database_url, private_redis,
        fork_server):
    pipeline = make_pipeline([
        {"env": "Development", "name": "Dev",
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Staging", "name": "Staging", "trigger": "WAIT_FOR", "wait": 3,
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Production", "name": "Rollout", "actions": [
            {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 50, "step": 50,
             "interval": 2}]},
    ], name="Calendar chaos")
    flags = [make.feature(project, f"cal_{n}", commit=False) for n in range(FLAGS)]
    db.session.commit()
    ids = [f.id for f in flags]
    boss = Actor.for_user(admin)
    org = project.organisation_id
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": private_redis,
           "SECRET_KEY": "chaos", "SWEEP_INTERVAL_SECONDS": "1"}
    workers = [fork_server.spawn("worker", env) for _ in range(3)]
    sweepers = [fork_server.spawn("sweeper", env) for _ in range(2)]
    conn = redis.Redis.from_url(private_redis)
    start = now()
    freeze, _ = calendar.create_freeze(
        boss, organisation_id=org, project_id=project.id, starts_at=start + timedelta(seconds=7),
        ends_at=start + timedelta(seconds=14), reason="Chaos freeze",
        environment_ids=[envs["Production"].id])
    try:
        transitions.ring(controls.add_flags(project, pipeline.id, ids, Actor.for_user(editor)))
        started = time.monotonic()
        plan = {2: "stop", 5: "lift", 3: "flush", 9: "flush"}
        done: set[int] = set()
        while True:
            time.sleep(1)
            elapsed = time.monotonic() - started
            victim = random.randrange(len(workers))
            fork_server.kill(workers[victim])
            workers[victim] = fork_server.spawn("worker", env)
            for at, what in sorted(plan.items()):
                if at in done or elapsed < at:
                    continue
                done.add(at)
                if what == "flush":
                    conn.flushall()
                elif what == "stop":
                    calendar.stop_line(boss, organisation_id=org, project_id=project.id,
                                       reason="Chaos incident")
                else:
                    _, released = calendar.lift_stop(boss, organisation_id=org,
                                                     project_id=project.id)
                    transitions.ring(released.bells)
            db.session.rollback()
            launched = db.session.scalar(select(func.count()).select_from(PipelineRun).where(
                PipelineRun.status == "launched"))
            ended = db.session.scalar(select(func.count()).select_from(AuditEntry).where(
                AuditEntry.event_type == calendar.EVENT_FREEZE_ENDED))
            # Done when every flag launched and the sweepers started and ended the freeze.
            if (launched == FLAGS and len(done) == len(plan) and ended) or elapsed > DEADLINE:
                break
    finally:
        for pid in workers + sweepers:
            fork_server.kill(pid)

    db.session.rollback()
    statuses = dict(db.session.execute(
        select(PipelineRun.status, func.count()).group_by(PipelineRun.status)).all())
    assert statuses == {"launched": FLAGS}, statuses
    keys = [k for (k,) in db.session.execute(select(AuditEntry.idempotency_key).where(
        AuditEntry.idempotency_key.is_not(None)))]
    assert len(keys) == len(set(keys))

    # Every action applied exactly once.
    stage_ids = [s.id for s in pipeline.stages]
    action = [s.actions for s in pipeline.stages]
    run_ids = dict(db.session.execute(select(PipelineRun.feature_id, PipelineRun.id)).all())
    applied = {k for k in keys if k.startswith("run:") and ":action:" in k}
    expected = set()
    for feature_id in ids:
        run = run_ids[feature_id]
        prefix = [f"run:{run}:stage:{stage_id}:action:" for stage_id in stage_ids]
        rollout = prefix[2] + f"{action[2][0].id}:"
        expected |= {prefix[0] + f"{action[0][0].id}:apply",
                     prefix[1] + f"{action[1][0].id}:apply"}
        expected |= {rollout + k for k in ("rollout-created", "rollout-100", "apply",
                                           "rollout-removed")}
    assert applied == expected

    # Nothing applied while the line was stopped (ids are assigned in commit order).
    [stopped] = db.session.scalars(select(AuditEntry.id).where(
        AuditEntry.event_type == calendar.EVENT_LINE_STOPPED)).all()
    [lifted] = db.session.scalars(select(AuditEntry.id).where(
        AuditEntry.event_type == calendar.EVENT_LINE_LIFTED)).all()
    during = db.session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.event_type.in_(APPLIED), AuditEntry.id > stopped, AuditEntry.id < lifted))
    assert during == 0
    # Nothing applied into Production while it was frozen (a second's tolerance: a worker
    # decides at the moment its batch began).
    frozen = db.session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.event_type.in_(APPLIED),
        AuditEntry.environment_id == envs["Production"].id,
        AuditEntry.created_at >= freeze.starts_at + timedelta(seconds=1),
        AuditEntry.created_at < freeze.ends_at))
    assert frozen == 0
    # The freeze started and ended once; every flag held was released, once per hold.
    assert len(db.session.scalars(select(AuditEntry.id).where(
        AuditEntry.event_type == calendar.EVENT_FREEZE_STARTED)).all()) == 1
    assert len(db.session.scalars(select(AuditEntry.id).where(
        AuditEntry.event_type == calendar.EVENT_FREEZE_ENDED)).all()) == 1
    held = Counter(db.session.scalars(select(AuditEntry.run_id).where(
        AuditEntry.event_type == calendar.EVENT_HELD)))
    released = Counter(db.session.scalars(select(AuditEntry.run_id).where(
        AuditEntry.event_type == calendar.EVENT_RELEASED)))
    assert sum(held.values()) >= 1 and held == released
    assert db.session.scalar(select(func.count()).select_from(PipelineRun).where(
        PipelineRun.hold_kind.is_not(None))) == 0

    states = db.session.execute(select(FeatureState.environment_id, FeatureState.enabled)
                                .where(FeatureState.feature_id.in_(ids))).all()
    assert {(e, on) for e, on in states} == {(envs[n].id, True)
                                             for n in ("Development", "Staging", "Production")}
    assert db.session.scalar(select(func.count()).select_from(Segment).where(
        Segment.is_system)) == 0
