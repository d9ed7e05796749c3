"""The engine applies each stage's actions once, in order, in the stage's environment."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    FeatureState,
    PipelineRun,
    Segment,
    SegmentOverride,
    StageExecution,
)
from webapp.services.actors import Actor
from webapp.services.runs import controls, planning, sweep, transition

from .conftest import START


def state(feature, env):
    db.session.rollback()  # a fresh snapshot: see what other connections committed
    row = db.session.scalar(select(FeatureState).where(
        FeatureState.feature_id == feature.id, FeatureState.environment_id == env.id))
    return row.enabled, row.value


def override(feature, env, segment_id):
    return db.session.scalar(select(SegmentOverride).where(
        SegmentOverride.feature_id == feature.id, SegmentOverride.environment_id == env.id,
        SegmentOverride.segment_id == segment_id))


def entries(event_type, feature=None):
    query = select(AuditEntry).where(AuditEntry.event_type == event_type)
    if feature is not None:
        query = query.where(AuditEntry.feature_id == feature.id)
    return list(db.session.scalars(query.order_by(AuditEntry.id)))


def the_run(feature):
    db.session.rollback()  # a fresh snapshot: see what other connections committed
    return db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == feature.id)
                             .order_by(PipelineRun.id.desc()))


def test_on_enter_applies_then_waits_in_the_next_stage(clock, make, project, editor, envs,
                                                       two_stage):
    flag = make.feature(project, "checkout")
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    assert bell.due_at == START

    report = sweep.advance(bell.run_id, bell.version)

    assert report.moved == 1
    assert state(flag, envs["Development"]) == (True, None)
    assert state(flag, envs["Staging"]) == (False, None)
    run = the_run(flag)
    assert (run.stage_position, run.status) == (1, "waiting")
    assert run.due_at == START + timedelta(days=1)
    assert report.bells == [planning.Bell(run.id, run.version, START + timedelta(days=1))]
    [entry] = entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", flag)
    assert entry.actor_label == "Release pipeline Two step"
    assert "Two step" in entry.message and "Dev" in entry.message
    assert entry.before == {"enabled": False, "value": None}
    assert entry.after == {"enabled": True, "value": None}
    assert entry.idempotency_key == (
        f"run:{run.id}:stage:{two_stage.stages[0].id}:action:{two_stage.stages[0].actions[0].id}:apply")
    assert len(entries("RELEASE_PIPELINE_FEATURE_ADDED", flag)) == 1


def test_a_wait_of_three_days_fires_when_the_clock_says_so(clock, make, project, editor, envs,
                                                             make_pipeline):
    pipeline = make_pipeline([{"env": "Production", "trigger": "WAIT_FOR", "wait": 3 * 86400,
                               "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]}])
    flag = make.feature(project)
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))

    assert sweep.advance(bell.run_id, bell.version).moved == 0  # early: nothing happens
    clock.shift(timedelta(days=3) - timedelta(seconds=1))
    assert sweep.drain().moved == 0
    clock.shift(timedelta(seconds=1))
    assert sweep.drain().moved == 1

    assert state(flag, envs["Production"]) == (True, None)
    run = the_run(flag)
    assert (run.status, run.end_reason) == ("launched", "launched")
    assert run.ended_at == START + timedelta(days=3)
    assert len(entries("RELEASE_PIPELINE_FEATURE_LAUNCHED", flag)) == 1


def test_each_action_type(clock, make, project, editor, envs, make_pipeline):
    beta = make.segment(project, "Beta")
    pipeline = make_pipeline([{"env": "Staging", "actions": [
        {"type": "TOGGLE_FEATURE", "enabled": True},
        {"type": "UPDATE_FEATURE_VALUE", "value": "blue"},
        {"type": "TOGGLE_FEATURE_FOR_SEGMENT", "enabled": False, "segment_id": beta.id},
        {"type": "UPDATE_FEATURE_VALUE_FOR_SEGMENT", "value": "green", "segment_id": beta.id},
    ]}])
    flag = make.feature(project, "colour", value_type="string", default_value="red")
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.drain()

    assert state(flag, envs["Staging"]) == (True, "blue")
    row = override(flag, envs["Staging"], beta.id)
    assert (row.enabled, row.value) == (False, "green")
    assert state(flag, envs["Development"]) == (False, "red")
    assert len(entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", flag)) == 4


def test_a_segment_action_overwrites_an_existing_override(clock, make, project, editor, envs,
                                                         make_pipeline):
    from webapp.services.platform import flag_changes
    from webapp.services.runs import controls, sweep

    beta = make.segment(project, "Beta")
    flag = make.feature(project, value_type="integer", default_value=1)
    flag_changes.write_target({"kind": "override", "environment_id": envs["Staging"].id,
                               "feature_id": flag.id, "segment_id": beta.id, "enabled": True,
                               "value": 5})
    db.session.commit()
    pipeline = make_pipeline([{"env": "Staging", "actions": [
        {"type": "UPDATE_FEATURE_VALUE_FOR_SEGMENT", "value": 9, "segment_id": beta.id}]}])
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    row = override(flag, envs["Staging"], beta.id)
    assert (row.enabled, row.value) == (True, 9)
    assert db.session.scalar(select(func.count()).select_from(SegmentOverride)) == 1


def rollout_pipeline(make_pipeline, **extra):
    return make_pipeline([{"env": "Production", "name": "Rollout", "actions": [
        {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 20, "step": 20, "interval": 3600,
         **extra}]}], name="Gradual")


def test_phased_rollout_grows_then_becomes_the_default(clock, make, project, editor, envs,
                                                       make_pipeline):
    pipeline = rollout_pipeline(make_pipeline, value="new")
    flag = make.feature(project, "search", value_type="string", default_value="old")
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    prod = envs["Production"]

    sweep.drain()
    run = the_run(flag)
    assert (run.status, run.rollout_percent) == ("rolling_out", 20)
    segment_id = run.rollout_segment_id
    segment = db.session.get(Segment, segment_id)
    assert segment.is_system
    assert segment.rules[0]["conditions"] == [
        {"property": "", "operator": "PERCENTAGE_SPLIT", "value": "20"}]
    hidden = override(flag, prod, segment_id)
    assert (hidden.enabled, hidden.value) == (True, "new")
    assert state(flag, prod) == (False, "old")
    [created] = entries("PHASED_ROLLOUT_STATE_CREATED", flag)
    assert created.after["percent"] == 20

    percents = []
    for _ in range(4):
        clock.shift(timedelta(hours=1))
        assert sweep.drain().moved == 1
        percents.append(the_run(flag).rollout_percent)
    assert percents == [40, 60, 80, None]
    updates = [(e.before, e.after) for e in entries("PHASED_ROLLOUT_STATE_UPDATED", flag)
               if e.object_type == "segment"]
    assert updates == [({"percent": 20}, {"percent": 40}), ({"percent": 40}, {"percent": 60}),
                       ({"percent": 60}, {"percent": 80}), ({"percent": 80}, {"percent": 100})]
    assert state(flag, prod) == (True, "new")
    assert db.session.get(Segment, segment_id) is None
    assert override(flag, prod, segment_id) is None
    assert the_run(flag).status == "launched"


def test_rollout_step_is_capped_at_100(clock, make, project, editor, make_pipeline):
    pipeline = make_pipeline([{"env": "Production", "actions": [
        {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 70, "step": 50, "interval": 60}]}])
    flag = make.feature(project)
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    clock.shift(timedelta(seconds=60))
    sweep.drain()
    [last] = [e for e in entries("PHASED_ROLLOUT_STATE_UPDATED", flag)
              if e.object_type == "segment"]
    assert last.after == {"percent": 100}
    assert the_run(flag).status == "launched"


def test_percentage_split_membership_only_grows(clock, make, project, editor, envs, make_pipeline):
    """flagsmith-flag-engine hashes (segment id, identity key) to a fixed number: whoever is in
    at 20 % is in at 40 %."""
    from flag_engine.context.types import EvaluationContext
    from flag_engine.segments.evaluator import is_context_in_segment

    pipeline = rollout_pipeline(make_pipeline)
    flag = make.feature(project)
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    segment_id = the_run(flag).rollout_segment_id
    client_key = envs["Production"].client_key

    def members():
        segment = db.session.get(Segment, segment_id)
        db.session.refresh(segment)
        context_segment = {"key": str(segment.id), "name": segment.name, "rules": segment.rules}
        found = set()
        for n in range(2000):
            identifier = f"user-{n}"
            context: EvaluationContext = {
                "environment": {"key": client_key, "name": "Production"},
                "identity": {"identifier": identifier, "key": f"{client_key}_{identifier}",
                             "traits": {}},
            }
            if is_context_in_segment(context, context_segment):
                found.add(identifier)
        return found

    at_20 = members()
    clock.shift(timedelta(hours=1))
    sweep.drain()
    at_40 = members()
    assert 300 < len(at_20) < 500 and 700 < len(at_40) < 900
    assert at_20 < at_40


def test_stage_snapshot_is_taken_before_the_first_change(clock, make, project, editor, envs,
                                                         two_stage):
    flag = make.feature(project)
    controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    execution = db.session.scalar(select(StageExecution).where(StageExecution.position == 0))
    assert execution.snapshot == {"environment_id": envs["Development"].id,
                                  "state": {"enabled": False, "value": None}, "overrides": []}
    assert execution.applied_at == START and execution.completed_at == START


def test_a_run_that_keeps_failing_is_halted_with_the_reason(clock, make, project, editor,
                                                            make_pipeline):
    pipeline = make_pipeline([{"env": "Development", "actions": [
        {"type": "UPDATE_FEATURE_VALUE", "value": "text"}]}])
    flag = make.feature(project, value_type="string")
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    flag.value_type = "integer"  # changed under the pipeline's feet
    db.session.commit()

    for _ in range(planning.MAX_ATTEMPTS):
        sweep.drain()
        clock.shift(timedelta(minutes=2))
    run = the_run(flag)
    assert run.status == "halted"
    assert "no longer fits" in run.last_error
    assert len(entries("RELEASE_PIPELINE_FEATURE_HALTED", flag)) == 1
    assert entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", flag) == []

    flag.value_type = "string"
    db.session.commit()
    bell = controls.retry(project, run.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    assert the_run(flag).status == "launched"
    assert len(entries("RELEASE_PIPELINE_FEATURE_RETRIED", flag)) == 1


def test_the_same_version_advanced_twice_writes_one_entry(clock, make, project, editor, two_stage):
    flag = make.feature(project)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    assert transition.transition(bell.run_id, bell.version)[0] == "moved"
    assert transition.transition(bell.run_id, bell.version)[0] == "skipped"
    assert sweep.advance(bell.run_id, None).moved == 0  # not due: waiting a day
    assert len(entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", flag)) == 1


@pytest.mark.parametrize("status", ["paused", "halted", "launched"])
def test_runs_that_are_not_advanceable_are_left_alone(clock, make, project, editor, two_stage,
                                                       status):
    flag = make.feature(project)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    run = db.session.get(PipelineRun, bell.run_id)
    run.status = status
    db.session.commit()
    assert transition.transition(bell.run_id, None)[0] == "skipped"
    assert entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", flag) == []
