"""Flags in pipelines: add, remove, pause, resume, advance now, roll back, retry — and refusals."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    Notification,
    OutboxMessage,
    PipelineRun,
    Segment,
    SegmentOverride,
)
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Forbidden, Invalid, NotFound
from webapp.services.platform import flag_changes
from webapp.services.runs import controls, planning, sweep

from .conftest import START
from .test_engine import entries, override, rollout_pipeline, state, the_run


def count(model):
    db.session.rollback()  # a fresh snapshot: see what other connections committed
    return db.session.scalar(select(func.count()).select_from(model))


def test_add_flags_several_at_once(clock, make, project, editor, two_stage):
    flags = [make.feature(project) for _ in range(3)]
    bells = controls.add_flags(project, two_stage.id, [f.id for f in flags], Actor.for_user(editor))
    assert len(bells) == 3 and {b.due_at for b in bells} == {START}
    assert count(PipelineRun) == 3
    assert len(entries("RELEASE_PIPELINE_FEATURE_ADDED")) == 3
    assert sweep.drain().moved == 3


@pytest.mark.parametrize("case, error, message", [
    ("draft", Conflict, "draft"),
    ("deleted", Conflict, "deleted"),
    ("other project's pipeline", NotFound, "not found"),
    ("other project's flag", Invalid, "Not a flag of this project"),
    ("in flight", Conflict, "Already in a release pipeline"),
    ("value does not fit", Invalid, "does not fit|takes"),
    ("viewer", Forbidden, "editors"),
    ("no flags", Invalid, "at least one"),
])
def test_bad_adds_change_nothing(clock, make, project, editor, viewer, make_pipeline, two_stage,
                                 case, error, message):
    flag = make.feature(project, value_type="integer")
    pipeline, actor, ids = two_stage, Actor.for_user(editor), [flag.id]
    if case == "draft":
        pipeline = make_pipeline([{"env": "Development", "actions": [
            {"type": "TOGGLE_FEATURE", "enabled": True}]}], status="draft")
    elif case == "deleted":
        pipeline.deleted_at = START
        db.session.commit()
    elif case == "other project's pipeline":
        other = make.project("Other")
        pipeline = make_pipeline([{"env": "Development", "actions": [
            {"type": "TOGGLE_FEATURE", "enabled": True}]}], project=other,
            environments={e.name: e for e in make.environments(other)})
    elif case == "other project's flag":
        ids = [make.feature(make.project("Other")).id]
    elif case == "in flight":
        controls.add_flag(project, two_stage.id, flag.id, actor)
    elif case == "value does not fit":
        pipeline = make_pipeline([{"env": "Development", "actions": [
            {"type": "UPDATE_FEATURE_VALUE", "value": "not a number"}]}])
    elif case == "viewer":
        actor = Actor.for_user(viewer)
    elif case == "no flags":
        ids = []
    before = (count(PipelineRun), count(AuditEntry))
    with pytest.raises(error, match=message):
        controls.add_flags(project, pipeline.id, ids, actor)
    db.session.rollback()
    assert (count(PipelineRun), count(AuditEntry)) == before


def added(project, pipeline, make, editor, **feature):
    flag = make.feature(project, **feature)
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    return flag, the_run(flag)


def test_pause_keeps_the_remaining_time_and_resume_restores_it(clock, make, project, editor,
                                                               envs, two_stage):
    flag, run = added(project, two_stage, make, editor)
    clock.shift(timedelta(hours=6))
    controls.pause(project, run.id, Actor.for_user(editor))
    assert the_run(flag).paused_remaining_seconds == 18 * 3600

    clock.shift(timedelta(days=5))  # a paused clock does not run
    assert sweep.drain().moved == 0 and sweep.sweep().moved == 0
    bell = controls.resume(project, run.id, Actor.for_user(editor))
    assert bell.due_at == START + timedelta(days=5, hours=24)
    clock.shift(timedelta(hours=18))
    assert sweep.drain().moved == 1
    assert state(flag, envs["Staging"]) == (True, None)
    assert len(entries("RELEASE_PIPELINE_FEATURE_PAUSED", flag)) == 1
    assert len(entries("RELEASE_PIPELINE_FEATURE_RESUMED", flag)) == 1


def test_advance_now_skips_the_remaining_wait(clock, make, project, editor, envs, two_stage):
    flag, run = added(project, two_stage, make, editor)
    bell = controls.advance_now(project, run.id, Actor.for_user(editor))
    assert bell.due_at == START
    sweep.advance(bell.run_id, bell.version)
    assert state(flag, envs["Staging"]) == (True, None)
    assert the_run(flag).status == "launched"
    assert len(entries("RELEASE_PIPELINE_FEATURE_ADVANCED", flag)) == 1


def test_a_click_while_the_worker_runs_writes_no_second_entry(clock, make, project, editor,
                                                             two_stage):
    flag, run = added(project, two_stage, make, editor)
    clock.shift(timedelta(days=1))
    scheduled = planning.Bell(run.id, run.version, run.due_at)
    bell = controls.advance_now(project, run.id, Actor.for_user(editor))  # the user clicks...
    sweep.advance(scheduled.run_id, scheduled.version)  # ...the scheduled job: stale version
    sweep.advance(bell.run_id, bell.version)  # the user's bell
    sweep.advance(bell.run_id, bell.version)  # delivered twice
    sweep.sweep()
    assert len(entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", flag)) == 2  # one per stage


def test_remove_keeps_the_states(clock, make, project, editor, envs, two_stage):
    flag, run = added(project, two_stage, make, editor)
    controls.remove(project, run.id, Actor.for_user(editor))
    run = the_run(flag)
    assert (run.status, run.end_reason) == ("removed", "removed")
    assert state(flag, envs["Development"]) == (True, None)
    assert len(entries("RELEASE_PIPELINE_FEATURE_REMOVED", flag)) == 1
    assert flag_changes.active_run(flag.id) is None


def test_remove_during_a_rollout_unhides_its_segment(clock, make, project, editor, envs,
                                                     make_pipeline):
    flag, run = added(project, rollout_pipeline(make_pipeline), make, editor)
    segment_id = run.rollout_segment_id
    controls.remove(project, run.id, Actor.for_user(editor))
    segment = db.session.get(Segment, segment_id)
    assert not segment.is_system and "20%" in segment.name
    assert override(flag, envs["Production"], segment_id).enabled


def test_rollback_restores_every_environment(clock, make, project, editor, envs, make_pipeline):
    beta = make.segment(project, "Beta")
    flag = make.feature(project, value_type="string", default_value="v1")
    flag_changes.write_target({"kind": "override", "environment_id": envs["Staging"].id,
                               "feature_id": flag.id, "segment_id": beta.id, "enabled": True,
                               "value": "beta"})
    db.session.commit()
    pipeline = make_pipeline([
        {"env": "Development", "actions": [{"type": "TOGGLE_FEATURE", "enabled": True},
                                           {"type": "UPDATE_FEATURE_VALUE", "value": "v2"}]},
        {"env": "Staging", "actions": [
            {"type": "TOGGLE_FEATURE", "enabled": True},
            {"type": "UPDATE_FEATURE_VALUE_FOR_SEGMENT", "value": "v2", "segment_id": beta.id}]},
        {"env": "Development", "actions": [{"type": "UPDATE_FEATURE_VALUE", "value": "v3"}]},
        {"env": "Production", "actions": [
            {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 10, "step": 10,
             "interval": 60}]},
    ])
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    run = the_run(flag)
    assert (run.stage_position, run.status) == (3, "rolling_out")
    segment_id = run.rollout_segment_id
    assert state(flag, envs["Development"]) == (True, "v3")

    controls.rollback(project, run.id, Actor.for_user(editor))

    assert state(flag, envs["Development"]) == (False, "v1")
    assert state(flag, envs["Staging"]) == (False, "v1")
    assert state(flag, envs["Production"]) == (False, "v1")
    restored = override(flag, envs["Staging"], beta.id)
    assert (restored.enabled, restored.value) == (True, "beta")
    assert override(flag, envs["Production"], segment_id) is None
    assert db.session.get(Segment, segment_id) is None
    assert count(SegmentOverride) == 1
    run = the_run(flag)
    assert (run.status, run.end_reason) == ("rolled_back", "rolled_back")
    assert len(entries("RELEASE_PIPELINE_FEATURE_ROLLED_BACK", flag)) == 1
    # Development, Staging state + override, Production hidden override
    assert len(entries("FEATURE_STATE_ROLLED_BACK", flag)) == 4


@pytest.mark.parametrize("action",
                         ["remove", "pause", "resume", "advance_now", "rollback", "retry"])
def test_acting_on_an_ended_run_is_refused(clock, make, project, editor, two_stage, action):
    flag, run = added(project, two_stage, make, editor)
    controls.remove(project, run.id, Actor.for_user(editor))
    before = count(AuditEntry)
    with pytest.raises(Conflict, match="already ended"):
        getattr(controls, action)(project, run.id, Actor.for_user(editor))
    db.session.rollback()
    assert count(AuditEntry) == before


@pytest.mark.parametrize("action, message", [
    ("resume", "not paused"), ("retry", "Only a halted"),
])
def test_resume_or_retry_a_run_that_does_not_need_it(clock, make, project, editor, two_stage,
                                                     action, message):
    _flag, run = added(project, two_stage, make, editor)
    with pytest.raises(Conflict, match=message):
        getattr(controls, action)(project, run.id, Actor.for_user(editor))


def test_paused_runs_cannot_be_advanced_or_paused_again(clock, make, project, editor, two_stage):
    _flag, run = added(project, two_stage, make, editor)
    controls.pause(project, run.id, Actor.for_user(editor))
    for action in (controls.pause, controls.advance_now):
        with pytest.raises(Conflict):
            action(project, run.id, Actor.for_user(editor))
        db.session.rollback()


@pytest.mark.parametrize("action", ["remove", "pause", "advance_now", "rollback"])
def test_viewers_change_nothing(clock, make, project, editor, viewer, two_stage, action):
    _flag, run = added(project, two_stage, make, editor)
    with pytest.raises(Forbidden):
        getattr(controls, action)(project, run.id, Actor.for_user(viewer))
    db.session.rollback()
    assert the_run(_flag).status == "waiting"


def test_a_run_of_another_project_is_not_found(clock, make, project, editor, two_stage):
    _flag, run = added(project, two_stage, make, editor)
    other = make.project("Other")
    with pytest.raises(NotFound):
        controls.pause(other, run.id, Actor.for_user(make.user(project=other)))


def test_manual_changes_are_refused_while_in_flight(clock, make, project, editor, two_stage):
    flag, run = added(project, two_stage, make, editor)
    with pytest.raises(Conflict, match="Two step"):
        flag_changes.refuse_if_in_flight(flag.id)
    controls.remove(project, run.id, Actor.for_user(editor))
    flag_changes.refuse_if_in_flight(flag.id)  # free again


def test_stage_completion_notifies_adder_and_creator_once(clock, make, project, editor, two_stage):
    adder = make.user(project=project, role="editor")
    flag = make.feature(project)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(adder))
    sweep.advance(bell.run_id, bell.version)
    sweep.advance(bell.run_id, bell.version)
    notes = db.session.scalars(select(Notification)).all()
    assert sorted(n.user_id for n in notes) == sorted([adder.id, editor.id])
    assert all("completed stage Dev" in n.message for n in notes)
    assert count(OutboxMessage) == 0  # mail not configured: in-app only


def test_one_notification_when_the_adder_created_the_pipeline(clock, make, project, editor,
                                                              two_stage):
    flag, _run = added(project, two_stage, make, editor)
    assert count(Notification) == 1


def test_a_launched_flag_can_be_rolled_back_while_it_is_its_latest_run(clock, make, project,
                                                                       editor, envs, two_stage):
    flag, run = added(project, two_stage, make, editor)
    clock.shift(timedelta(days=1))
    sweep.drain()
    assert the_run(flag).status == "launched"
    controls.rollback(project, run.id, Actor.for_user(editor))
    assert the_run(flag).status == "rolled_back"
    assert state(flag, envs["Development"]) == (False, None)
    assert state(flag, envs["Staging"]) == (False, None)
    with pytest.raises(Conflict):
        controls.rollback(project, run.id, Actor.for_user(editor))
