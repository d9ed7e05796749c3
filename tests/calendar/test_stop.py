"""Stop the line: one switch holds every transition at once (10,000 flags in flight in one
transaction); lifting it resumes each flag where it was, spreading the due work over a bounded
interval so thousands do not land in the same second."""

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import event, func, insert, select

from tests.support.pipelines import START
from webapp.extensions import db
from webapp.models import AuditEntry, Feature, PipelineRun
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Forbidden, Invalid
from webapp.services.pages import flag_runs
from webapp.services.runs import calendar, calendar_timeline, controls, sweep

from .conftest import entries, notes, the_run

MANY = 10_000


def add_many(project, pipeline, editor, count):
    """`count` flags in flight in the pipeline's first stage, due over the next two minutes
    (inserted in bulk: the engine's own batches are not what this measures)."""
    db.session.execute(insert(Feature.__table__), [
        {"project_id": project.id, "name": f"bulk_{n}", "description": "", "value_type": "none",
         "default_enabled": False, "tags": [], "created_at": START} for n in range(count)])
    ids = list(db.session.scalars(select(Feature.id).where(Feature.name.like("bulk_%"))
                                  .order_by(Feature.id)))
    first = pipeline.stages[0]
    db.session.execute(insert(PipelineRun.__table__), [
        {"project_id": project.id, "pipeline_id": pipeline.id, "feature_id": fid,
         "stage_id": first.id, "stage_position": 0, "status": "waiting", "entered_at": START,
         "due_at": START + timedelta(seconds=n % 120), "version": 1, "attempts": 0,
         "added_by_id": editor.id, "created_at": START}
        for n, fid in enumerate(ids)])
    db.session.commit()
    return ids


@pytest.mark.slow
def test_stopping_holds_ten_thousand_flags_in_one_transaction_and_lifting_spreads_them(
        clock, app, project, editor, make_pipeline, boss):
    pipeline = make_pipeline([{"env": "Staging", "trigger": "WAIT_FOR", "wait": 120,
                               "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]}])
    add_many(project, pipeline, editor, MANY)
    commits = []
    listener = lambda conn: commits.append(1)  # noqa: E731
    event.listen(db.engine, "commit", listener)
    try:
        stop, held = calendar.stop_line(boss, organisation_id=project.organisation_id,
                                        project_id=project.id, reason="Incident 42")
    finally:
        event.remove(db.engine, "commit", listener)
    assert held == MANY and len(commits) == 1  # every flag held, in one transaction
    db.session.rollback()
    rows = Counter(db.session.execute(select(PipelineRun.hold_kind, PipelineRun.hold_id,
                                             PipelineRun.due_at, PipelineRun.version)).all())
    assert rows == {("stop", stop.id, None, 2): MANY}
    assert db.session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.event_type == calendar.EVENT_HELD)) == MANY
    assert len(entries(calendar.EVENT_LINE_STOPPED)) == 1 and notes("line_stopped")

    clock.move_to(START + timedelta(hours=1))  # every flag's time has long come: none moves
    assert sweep.due_run_ids(10) == [] and sweep.drain().moved == 0

    moment = START + timedelta(hours=1)
    _, released = calendar.lift_stop(boss, organisation_id=project.organisation_id,
                                     project_id=project.id)
    assert released.resumed == MANY and len(released.bells) == MANY
    db.session.rollback()
    dues = [d for (d,) in db.session.execute(select(PipelineRun.due_at))]
    rate = calendar.release_per_second()
    spread = calendar.release_max_spread_seconds()
    per_second = Counter(int((d - moment).total_seconds()) for d in dues)
    assert max(per_second.values()) <= rate  # never more than `rate` in one second
    assert min(dues) >= moment and max(dues) <= moment + timedelta(seconds=spread)
    assert max(dues) >= moment + timedelta(seconds=MANY // rate - 1)  # spread, not bunched
    # Each resumed with the time it had left (0–119 s), or later when its second was full.
    held_rows = dict(db.session.execute(select(PipelineRun.id, PipelineRun.due_at)).all())
    assert all(d >= moment for d in held_rows.values())
    assert db.session.scalar(select(func.count()).select_from(PipelineRun).where(
        PipelineRun.hold_kind.is_not(None))) == 0
    assert db.session.scalar(select(func.count()).select_from(AuditEntry).where(
        AuditEntry.event_type == calendar.EVENT_RELEASED)) == MANY


def test_the_spread_is_bounded_whatever_the_rate():
    moment = START
    natural = [moment] * MANY + [moment + timedelta(seconds=30)] * 50
    dues = calendar.spread_due_times(natural, moment, per_second=10, max_spread_seconds=100)
    rate = 101  # 10 a second would take 1005 s: raised to ceil(10050 / 100) so all land in 100 s
    per_second = Counter(int((d - moment).total_seconds()) for d in dues)
    assert max(per_second.values()) <= rate
    assert max(dues) < moment + timedelta(seconds=100)
    assert all(d >= n for d, n in zip(dues, natural, strict=True))
    few = calendar.spread_due_times([moment + timedelta(seconds=5)] * 3, moment,
                                    per_second=10, max_spread_seconds=100)
    assert few[0] == moment + timedelta(seconds=5) and max(few) < moment + timedelta(seconds=6)


def test_stop_holds_every_transition_and_lifting_resumes_each_where_it_was(
        clock, make, project, editor, envs, make_pipeline, boss):
    pipeline = make_pipeline([
        {"env": "Development", "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Production", "trigger": "WAIT_FOR", "wait": 600, "actions": [
            {"type": "PHASED_ROLLOUT", "enabled": True, "initial": 10, "step": 45,
             "interval": 300}]},
    ])
    waiting, rolling = make.feature(project, "waiting"), make.feature(project, "rolling")
    bell = controls.add_flag(project, pipeline.id, rolling.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    clock.shift(600)
    sweep.drain()  # `rolling` is at 10 %, its next step due at +900 s
    assert the_run(rolling).rollout_percent == 10
    bell = controls.add_flag(project, pipeline.id, waiting.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)  # waits in Production, due at +1200 s
    clock.shift(100)
    stopped_at = START + timedelta(seconds=700)
    calendar.stop_line(boss, organisation_id=project.organisation_id, project_id=project.id,
                       reason="Incident")
    newcomer = make.feature(project, "newcomer")  # added while stopped: held when due
    bell = controls.add_flag(project, pipeline.id, newcomer.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    assert the_run(newcomer).hold_kind == "stop"
    assert calendar_timeline.run_times(the_run(rolling)).launch_at is None  # unknown
    clock.shift(3600)
    assert sweep.drain().moved == 0
    _, released = calendar.lift_stop(boss, organisation_id=project.organisation_id,
                                     project_id=project.id)
    moment = stopped_at + timedelta(seconds=3600)
    assert released.resumed == 3
    run = the_run(rolling)
    assert (run.status, run.rollout_percent) == ("rolling_out", 10)
    assert run.due_at == moment + timedelta(seconds=200)  # it had 200 s of its 300 left
    assert the_run(waiting).due_at == moment + timedelta(seconds=500)
    assert the_run(newcomer).due_at == moment  # it fell due while stopped: at once
    with pytest.raises(Conflict):
        calendar.lift_stop(boss, organisation_id=project.organisation_id, project_id=project.id)


def test_the_organisation_switch_and_who_may_pull_it(clock, make, project, editor, boss, root,
                                                     make_pipeline):
    pipeline = make_pipeline([{"env": "Staging", "trigger": "WAIT_FOR", "wait": 60,
                               "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]}])
    flag = make.feature(project)
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    org = project.organisation_id
    with pytest.raises(Forbidden):
        calendar.stop_line(Actor.for_user(editor), organisation_id=org,
                           project_id=project.id, reason="x")
    with pytest.raises(Forbidden):
        calendar.stop_line(boss, organisation_id=org, project_id=None, reason="x")
    with pytest.raises(Invalid):
        calendar.stop_line(root, organisation_id=org, project_id=None, reason=" ")
    stop, held = calendar.stop_line(root, organisation_id=org, project_id=None,
                                    reason="Region outage")
    assert held == 1 and the_run(flag).hold_kind == "stop"
    with pytest.raises(Conflict):
        calendar.stop_line(root, organisation_id=org, project_id=None, reason="again")
    [hold] = calendar.holds_for_project(project.id)
    assert (hold.kind, hold.scope, hold.why) == ("stop", "organisation", "Region outage")
    # A project stop too: lifting the organisation's hands the flag to it.
    calendar.stop_line(boss, organisation_id=org, project_id=project.id, reason="Ours too")
    _, released = calendar.lift_stop(root, organisation_id=org, project_id=None)
    assert (released.resumed, released.still_held) == (0, 1)
    assert the_run(flag).hold_kind == "stop" and the_run(flag).hold_id != stop.id
    _, released = calendar.lift_stop(boss, organisation_id=org, project_id=project.id)
    assert released.resumed == 1 and the_run(flag).hold_kind is None


def test_a_lift_racing_a_transition_is_mended_by_the_sweeper(clock, make, project, editor,
                                                              boss, make_pipeline):
    pipeline = make_pipeline([{"env": "Staging", "actions": [
        {"type": "TOGGLE_FEATURE", "enabled": True}]}])
    flag = make.feature(project)
    calendar.stop_line(boss, organisation_id=project.organisation_id, project_id=project.id,
                       reason="x")
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    # A worker read the stop before it was lifted and holds the run after the lift committed.
    run = the_run(flag)
    stop_id = calendar.get_stop(project.organisation_id, project.id).id
    calendar.lift_stop(boss, organisation_id=project.organisation_id, project_id=project.id)
    db.session.execute(PipelineRun.__table__.update().where(PipelineRun.id == run.id).values(
        hold_kind="stop", hold_id=stop_id, due_at=None, held_since=START, held_due_at=START,
        version=PipelineRun.version + 1))
    db.session.commit()
    released = calendar.tick()
    assert released.resumed == 1 and the_run(flag).due_at == START
    sweep.drain()
    assert the_run(flag).status == "launched"
    assert bell.run_id == run.id


def test_pausing_a_held_flag_keeps_the_time_it_had_left(clock, make, project, editor, boss,
                                                        make_pipeline):
    pipeline = make_pipeline([{"env": "Staging", "trigger": "WAIT_FOR", "wait": 600,
                               "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]}])
    flag = make.feature(project)
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    clock.shift(100)
    calendar.stop_line(boss, organisation_id=project.organisation_id, project_id=project.id,
                       reason="x")
    assert flag_runs.time_left(the_run(flag)) == "held: line stopped"
    hold = calendar.hold_of_run(the_run(flag))
    assert (hold.kind, hold.who, hold.why, hold.until) == ("stop", "admin@example.com", "x", None)
    clock.shift(1000)
    controls.pause(project, bell.run_id, Actor.for_user(editor))
    run = the_run(flag)
    assert (run.status, run.paused_remaining_seconds, run.hold_kind) == ("paused", 500.0, None)
    _, released = calendar.lift_stop(boss, organisation_id=project.organisation_id,
                                     project_id=project.id)
    assert released.resumed == 0  # paused: its own clock, resumed by a person
    controls.resume(project, bell.run_id, Actor.for_user(editor))
    assert the_run(flag).due_at == START + timedelta(seconds=1600)
