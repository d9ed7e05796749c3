"""120 flags through a 4-stage pipeline while workers are SIGKILLed and Redis is flushed.

Three real worker processes (RQ SimpleWorker with its scheduler) and two sweepers run against
the test's file database and a private Redis. Every second one random worker is killed with
SIGKILL (and restarted); Redis is FLUSHALLed twice. Every flag must launch, every action's audit
entry must exist exactly once, and the final states must be exactly what the pipeline says.
A webhook receiver (a real HTTP server in this process) counts deliveries: each flag's
"added" and "launched" event arrives, none twice except where a killed worker's attempt was
recorded as interrupted (at least once; receivers dedupe on X-Railyard-Delivery).
Real processes need real time: the waits here are a few seconds, the whole run well under 3 min.
"""

import os
import random
import time

import pytest
import redis
from sqlalchemy import func, select

from jobs import transitions
from tests.support import receiver as receivers
from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    FeatureState,
    PipelineRun,
    Segment,
    SegmentOverride,
    WebhookAttempt,
    WebhookDelivery,
)
from webapp.services.actors import SYSTEM, Actor
from webapp.services.governance import webhooks
from webapp.services.runs import controls

pytestmark = pytest.mark.chaos
# `bench/engine.py --chaos 2000` runs the larger variant through these two. 120 flags keep the
# run past both flushes and a dozen kills (a flag needs 9 s of waits and rollout steps at least,
# and the run ends only after the flush at 9 s) at 2/5 of 300's cost.
FLAGS = int(os.environ.get("CHAOS_FLAGS", "120"))
DEADLINE = int(os.environ.get("CHAOS_DEADLINE", "150"))


def test_every_flag_launches_exactly_once(app, make, project, editor, make_pipeline, envs,
                                          database_url, private_redis, fork_server):
    beta = make.segment(project, "Beta")
    pipeline = make_pipeline([
        {"env": "Development", "name": "Dev",
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Staging", "name": "Staging", "trigger": "WAIT_FOR", "wait": 3, "actions": [
            {"type": "TOGGLE_FEATURE", "enabled": True},
            {"type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": True, "segment_id": beta.id}]},
        {"env": "Production", "name": "Rollout", "actions": [
            {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 25, "step": 25, "interval": 2}]},
        {"env": "Staging", "name": "Close beta", "actions": [
            {"type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": False, "segment_id": beta.id}]},
    ], name="Chaos")
    flags = [make.feature(project, f"chaos_{n}", commit=False) for n in range(FLAGS)]
    db.session.commit()
    ids = [f.id for f in flags]
    receiver = receivers.start()
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = True
    webhooks.create_webhook(project, SYSTEM, url=receiver.url, secret="chaos",
                            events=["pipeline.flag_added", "pipeline.flag_launched"])
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": private_redis,
           "SECRET_KEY": "chaos", "SWEEP_INTERVAL_SECONDS": "1",
           "WEBHOOKS_ALLOW_PRIVATE": "1", "WEBHOOK_TIMEOUT_SECONDS": "2"}
    workers = [fork_server.spawn("worker", env) for _ in range(3)]
    sweepers = [fork_server.spawn("sweeper", env) for _ in range(2)]
    conn = redis.Redis.from_url(private_redis)
    try:
        transitions.ring(controls.add_flags(project, pipeline.id, ids, Actor.for_user(editor)))
        started = time.monotonic()
        flushes = {3: False, 9: False}
        while True:
            time.sleep(1)
            elapsed = time.monotonic() - started
            victim = random.randrange(len(workers))
            fork_server.kill(workers[victim])
            workers[victim] = fork_server.spawn("worker", env)
            for at, done in flushes.items():
                if not done and elapsed >= at:
                    conn.flushall()
                    flushes[at] = True
            db.session.rollback()
            launched = db.session.scalar(select(func.count()).select_from(PipelineRun).where(
                PipelineRun.status == "launched"))
            delivered = db.session.scalar(select(func.count()).select_from(WebhookDelivery)
                                          .where(WebhookDelivery.status == "delivered"))
            if (launched == FLAGS and delivered == 2 * FLAGS and all(flushes.values())) \
                    or elapsed > DEADLINE:
                break
    finally:
        for pid in workers + sweepers:
            fork_server.kill(pid)
        receiver.server.shutdown()
        receiver.server.server_close()

    db.session.rollback()
    statuses = dict(db.session.execute(
        select(PipelineRun.status, func.count()).group_by(PipelineRun.status)).all())
    assert statuses == {"launched": FLAGS}, statuses

    stage_ids = [s.id for s in pipeline.stages]
    action = [s.actions for s in pipeline.stages]
    run_ids = dict(db.session.execute(select(PipelineRun.feature_id, PipelineRun.id)).all())
    keys = [k for (k,) in db.session.execute(
        select(AuditEntry.idempotency_key).where(AuditEntry.run_id.is_not(None),
                                                 AuditEntry.idempotency_key.is_not(None)))]
    assert len(keys) == len(set(keys))
    expected = set()
    for feature_id in ids:
        run = run_ids[feature_id]
        prefix = [f"run:{run}:stage:{stage_id}:action:" for stage_id in stage_ids]
        expected |= {prefix[0] + f"{action[0][0].id}:apply",
                     prefix[1] + f"{action[1][0].id}:apply", prefix[1] + f"{action[1][1].id}:apply",
                     prefix[3] + f"{action[3][0].id}:apply", f"run:{run}:launched"}
        rollout = prefix[2] + f"{action[2][0].id}:"
        expected |= {rollout + k for k in ("rollout-created", "rollout-50", "rollout-75",
                                           "rollout-100", "apply", "rollout-removed")}
    assert set(keys) == expected

    states = db.session.execute(select(FeatureState.environment_id, FeatureState.enabled)
                                .where(FeatureState.feature_id.in_(ids))).all()
    assert {(e, on) for e, on in states} == {(envs[n].id, True)
                                             for n in ("Development", "Staging", "Production")}
    overrides = db.session.execute(
        select(SegmentOverride.environment_id, SegmentOverride.segment_id, SegmentOverride.enabled)
        .where(SegmentOverride.feature_id.in_(ids))).all()
    assert len(overrides) == FLAGS
    assert set(overrides) == {(envs["Staging"].id, beta.id, False)}
    hidden = select(func.count()).select_from(Segment).where(Segment.is_system)
    assert db.session.scalar(hidden) == 0

    # Deliveries: one row per (event, receiver), each delivered; each event received, and a
    # second copy only where a worker died mid-attempt (recorded as interrupted).
    rows = db.session.execute(select(WebhookDelivery.idempotency_key, WebhookDelivery.status)
                              ).all()
    outcomes = db.session.execute(select(WebhookAttempt.outcome, WebhookAttempt.error, func.count())
                                  .group_by(WebhookAttempt.outcome, WebhookAttempt.error)).all()
    assert len(rows) == 2 * FLAGS and {status for _key, status in rows} == {"delivered"}, outcomes
    keys = [r.headers["X-Railyard-Delivery"] for r in receiver.received]
    assert set(keys) == {key for key, _status in rows}
    interrupted = db.session.scalar(select(func.count()).select_from(WebhookAttempt)
                                    .where(WebhookAttempt.outcome == "interrupted"))
    assert len(keys) - len(set(keys)) <= interrupted
    launched_names = sorted(r.json()["feature"]["name"]
                            for r in receiver.of_type("pipeline.flag_launched"))
    assert sorted(set(launched_names)) == sorted(f"chaos_{n}" for n in range(FLAGS))
