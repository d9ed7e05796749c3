"""Guarded stages against a real Prometheus scraping an exporter the test flips.

The engine runs on the injected (frozen) clock: the test moves it one check interval at a time
and calls the engine directly; only Prometheus' own scrape happens in real time.
"""

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import AuditEntry, FeatureState, PipelineRun, Segment
from webapp.models.health import HealthCheckState
from webapp.services.actors import Actor
from webapp.services.runs import controls, gates, planning, sweep

pytestmark = pytest.mark.prometheus

QUERY = 'max(checkout_error_ratio{flag="{{ flag }}"})'
HEALTHY, BAD = 0.01, 0.5


def _check(**extra):
    return {"kind": "PROMETHEUS", "name": "error ratio", "query": QUERY, "comparison": "<",
            "threshold": 0.05, **extra}


@pytest.fixture
def flag(make, project):
    return make.feature(project, "guarded_flag")


@pytest.fixture
def three_stages(guard):
    """Development at once (checked), Staging baking 60 s (checked, rolls back), Production."""
    return guard([
        {"env": "Development", "name": "Dev", "actions": [{"type": "TOGGLE_FEATURE",
                                                           "enabled": True}]},
        {"env": "Staging", "name": "Stage", "trigger": "WAIT_FOR", "wait": 60,
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Production", "name": "Prod", "actions": [{"type": "TOGGLE_FEATURE",
                                                           "enabled": True}]},
    ], checks={0: [_check()], 1: [_check()]}, on_unhealthy={0: "ROLL_BACK", 1: "ROLL_BACK"})


def _run(flag) -> PipelineRun:
    db.session.expire_all()
    return db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == flag.id))


def _enabled(flag, envs, name) -> bool:
    return bool(db.session.scalar(select(FeatureState.enabled).where(
        FeatureState.feature_id == flag.id, FeatureState.environment_id == envs[name].id)))


def _events(run, event) -> list[AuditEntry]:
    return list(db.session.scalars(select(AuditEntry).where(
        AuditEntry.run_id == run.id, AuditEntry.event_type == event)))


def _tick(clock, seconds=1):
    clock.shift(seconds)
    sweep.drain()


def _start(project, editor, pipeline, flag):
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.drain()


def test_advances_while_healthy_and_bakes_the_whole_wait(
        clock, prometheus, exporter, integrate, project, editor, envs, flag, three_stages):
    integrate(prometheus.url)
    _start(project, editor, three_stages, flag)
    run = _run(flag)
    assert (run.status, run.stage_position) == ("watching", 0)
    assert _enabled(flag, envs, "Development")
    _tick(clock)  # the first check: healthy, no bake in an ON_ENTER stage -> Staging applies
    run = _run(flag)
    assert (run.status, run.stage_position) == ("watching", 1)
    assert _enabled(flag, envs, "Staging")
    _tick(clock)  # healthy: the 60 s bake starts
    _tick(clock, 30)
    assert (_run(flag).status, _run(flag).stage_position) == ("watching", 1)
    _tick(clock, 30)
    run = _run(flag)
    assert (run.status, run.ended_at is not None) == ("launched", True)
    assert _enabled(flag, envs, "Production")
    states = db.session.scalars(select(HealthCheckState).where(
        HealthCheckState.run_id == run.id).order_by(HealthCheckState.id)).all()
    assert [(s.status, s.last_value, s.evaluations) for s in states] == [
        ("healthy", HEALTHY, 1), ("healthy", HEALTHY, 3)]


def test_bad_value_mid_bake_rolls_back_once_in_every_environment(
        clock, prometheus, exporter, integrate, project, editor, envs, flag, three_stages):
    integrate(prometheus.url)
    _start(project, editor, three_stages, flag)
    _tick(clock)
    _tick(clock)
    _tick(clock, 20)
    run = _run(flag)
    assert (run.status, run.stage_position) == ("watching", 1)
    stale_version = run.version
    exporter.value = BAD
    prometheus.wait_for_value("checkout_error_ratio", BAD)
    _tick(clock)
    run = _run(flag)
    assert (run.status, run.end_reason) == ("rolled_back", "rolled_back")
    assert not _enabled(flag, envs, "Development") and not _enabled(flag, envs, "Staging")
    # Replays decide nothing: another drain, the sweeper, a job for the old version.
    _tick(clock, 5)
    sweep.sweep()
    assert gates.watch(run.id, stale_version, cache=planning.Cache(),
                       now=clock_now()) == ("skipped", None)
    restored = _events(run, "FEATURE_STATE_ROLLED_BACK")
    assert sorted(e.environment_id for e in restored) == sorted(
        [envs["Development"].id, envs["Staging"].id])
    (automatic,) = _events(run, "RELEASE_PIPELINE_FEATURE_ROLLED_BACK_AUTOMATICALLY")
    assert "0.5 breaks < 0.05" in automatic.message
    (failed,) = _events(run, "HEALTH_CHECK_FAILED")
    assert failed.after["value"] == BAD
    from webapp.models import Notification

    assert db.session.scalar(select(func.count()).select_from(Notification).where(
        Notification.kind == "flag_rolled_back")) == 1


def clock_now():
    from webapp.clock import now

    return now()


def test_stopped_prometheus_holds_without_rollback(
        clock, prometheus, exporter, integrate, project, editor, envs, flag, three_stages):
    integrate(prometheus.url)
    _start(project, editor, three_stages, flag)
    _tick(clock)
    _tick(clock)
    prometheus.stop()
    for _ in range(5):
        _tick(clock, 30)  # far past the bake: unknown never completes, never rolls back
    run = _run(flag)
    assert (run.status, run.stage_position) == ("watching", 1)
    assert _enabled(flag, envs, "Staging") and not _enabled(flag, envs, "Production")
    state = db.session.scalar(select(HealthCheckState).where(
        HealthCheckState.run_id == run.id, HealthCheckState.status == "unknown"))
    assert state.last_value is None and "unreachable" in state.last_detail
    assert _events(run, "RELEASE_PIPELINE_FEATURE_ROLLED_BACK_AUTOMATICALLY") == []
    assert _events(run, "FEATURE_STATE_ROLLED_BACK") == []


def test_phased_rollout_stops_at_its_current_percentage(
        clock, prometheus, exporter, integrate, project, editor, envs, flag, guard):
    integrate(prometheus.url)
    pipeline = guard([
        {"env": "Production", "name": "Prod", "actions": [
            {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 10, "step": 10,
             "interval": 10}]},
    ], checks={0: [_check()]}, on_unhealthy={0: "HOLD"})
    _start(project, editor, pipeline, flag)
    run = _run(flag)
    assert (run.status, run.rollout_percent) == ("rolling_out", 10)
    for _ in range(10):
        _tick(clock)
    assert _run(flag).rollout_percent == 20  # one step after a whole healthy interval
    exporter.value = BAD
    prometheus.wait_for_value("checkout_error_ratio", BAD)
    _tick(clock)
    run = _run(flag)
    assert (run.status, run.paused_status, run.rollout_percent) == ("halted", "rolling_out", 20)
    assert "Held by health check error ratio" in run.last_error
    for _ in range(3):
        _tick(clock, 10)
    run = _run(flag)
    assert (run.status, run.rollout_percent) == ("halted", 20)
    rules = db.session.get(Segment, run.rollout_segment_id).rules
    assert rules[0]["conditions"][0]["value"] == "20"
    assert len(_events(run, "RELEASE_PIPELINE_FEATURE_HELD")) == 1
