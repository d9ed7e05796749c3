"""Jobs through a real RQ SimpleWorker on the test's real Redis; the sweeper survives FLUSHALL."""

import threading
import time
from datetime import UTC, timedelta

import pytest
from rq import Queue
from rq.job import Job, JobStatus
from sqlalchemy import select

from jobs import schedule, transitions
from jobs.worker import JobWorker
from tests.support.pipelines import START
from webapp import redis_conn
from webapp.extensions import db
from webapp.models import PipelineRun, StageExecution
from webapp.services.actors import Actor
from webapp.services.governance import webhook_delivery
from webapp.services.runs import controls, planning, sweep

from .test_engine import entries, rollout_pipeline, state, the_run


def add(project, pipeline, flags, editor):
    bells = controls.add_flags(project, pipeline.id, [f.id for f in flags], Actor.for_user(editor))
    transitions.ring(bells)
    return bells


def test_a_worker_applies_on_enter_then_the_scheduler_fires_the_wait(clock, make, project, editor,
                                                                      envs, two_stage, work):
    flag = make.feature(project)
    [bell] = add(project, two_stage, [flag], editor)
    queue = redis_conn.queue()
    assert queue.job_ids == [f"advance-{bell.run_id}-v1"]

    work()
    assert state(flag, envs["Development"]) == (True, None)
    # one job for the second the wait ends in (started a second before it), not one per run
    scheduled = queue.scheduled_job_registry.get_job_ids()
    assert scheduled == [f"advance-due-{int((START + timedelta(days=1)).timestamp())}"]

    work()  # not due yet: nothing moves
    assert state(flag, envs["Staging"]) == (False, None)
    clock.shift(timedelta(days=1))
    work()
    assert state(flag, envs["Staging"]) == (True, None)
    assert the_run(flag).status == "launched"
    assert len(entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", flag)) == 2


def test_a_bulk_add_rings_one_job_that_moves_them_all(clock, make, project, editor, two_stage,
                                                      work):
    flags = [make.feature(project) for _ in range(60)]
    add(project, two_stage, flags, editor)
    queue = redis_conn.queue()
    assert len(queue.job_ids) == 1
    work()
    runs_ = db.session.scalars(select(PipelineRun)).all()
    assert {(r.stage_position, r.status) for r in runs_} == {(1, "waiting")}
    # 60 runs due at the same second: one drain job is scheduled, not 60
    assert len(queue.scheduled_job_registry.get_job_ids()) == 1
    clock.shift(timedelta(days=1, seconds=1))
    work()
    assert {r.status for r in db.session.scalars(select(PipelineRun))} == {"launched"}


def test_waits_ending_in_one_second_share_one_drain_job_started_a_second_before(
        clock, make, project, editor, make_pipeline, work, monkeypatch):
    pipeline = make_pipeline([{"env": "Development", "trigger": "WAIT_FOR", "wait": 1}])
    first, second = make.feature(project), make.feature(project)
    add(project, pipeline, [first], editor)  # due at START + 1 s
    clock.shift(timedelta(milliseconds=500))
    add(project, pipeline, [second], editor)  # due at START + 1.5 s, the same second
    queue = redis_conn.queue()
    # its start (START) has come: queued at once, not scheduled
    assert queue.job_ids == [f"advance-due-{int(START.timestamp()) + 1}"]
    slept = []

    def sleep(seconds):  # the drain job's waits move the test's clock (no bell wakes it)
        slept.append(seconds)
        clock.shift(timedelta(seconds=seconds))

    monkeypatch.setattr(transitions, "_pause", sleep)
    work()
    applied = db.session.execute(
        select(StageExecution.run_id, StageExecution.applied_at)).all()
    assert len(applied) == 2
    due = {the_run(first).id: START + timedelta(seconds=1),
           the_run(second).id: START + timedelta(seconds=1.5)}
    for run_id, moment in applied:  # each moved within a tick of falling due
        late = moment.replace(tzinfo=UTC) - due[run_id]
        assert timedelta(0) <= late <= timedelta(seconds=transitions.DRAIN_TICK_SECONDS * 1.5)
    assert max(slept) == transitions.DRAIN_TICK_SECONDS


def test_a_flag_added_while_a_drain_job_passes_moves_in_its_next_pass(
        clock, make, project, editor, envs, make_pipeline, two_stage, work, monkeypatch):
    waiting = make_pipeline([{"env": "Staging", "trigger": "WAIT_FOR", "wait": 1}], name="Wait")
    add(project, waiting, [make.feature(project)], editor)  # its drain job passes until + 2 s
    flag = make.feature(project)
    rung = []

    def sleep(seconds):
        if not rung:  # between two passes, a flag is added and its bell rung
            add(project, two_stage, [flag], editor)
            rung.append(list(redis_conn.queue().job_ids))
        clock.shift(timedelta(seconds=seconds))

    monkeypatch.setattr(transitions, "_pause", sleep)
    work()
    assert rung == [[]]  # no job of its own
    assert state(flag, envs["Development"]) == (True, None)
    assert not redis_conn.connection().exists(transitions.DRAINING_KEY)


def test_a_flag_riding_on_a_drain_job_wakes_it_instead_of_waiting_for_its_tick(
        clock, make, project, editor, two_stage):
    connection = redis_conn.connection()
    connection.set(transitions.DRAINING_KEY, 1, px=1000)  # a drain job is between two passes
    add(project, two_stage, [make.feature(project)], editor)
    assert redis_conn.queue().job_ids == []  # it rides on the drain job's next pass
    started = time.perf_counter()
    assert transitions._pause(30) is True  # that pass starts now, not a tick later
    assert time.perf_counter() - started < 5
    assert transitions._pause(0.05) is False  # one wake for the bells rung before the pass


def test_a_wait_ending_in_a_second_whose_job_already_started_gets_a_job_of_its_own(
        clock, make, project, editor, make_pipeline):
    pipeline = make_pipeline([{"env": "Development", "trigger": "WAIT_FOR", "wait": 5}])
    first, second = make.feature(project), make.feature(project)
    add(project, pipeline, [first], editor)
    registry = redis_conn.queue().scheduled_job_registry
    name = f"advance-due-{int(START.timestamp()) + 5}"
    assert registry.get_job_ids() == [name]
    Job.fetch(name, connection=redis_conn.connection()).set_status(JobStatus.STARTED)
    [bell] = add(project, pipeline, [second], editor)
    assert sorted(registry.get_job_ids()) == [name, f"{name}-after-{bell.run_id}-v1"]


def test_ringing_twice_queues_one_job(clock, make, project, editor, two_stage):
    flag = make.feature(project)
    bells = add(project, two_stage, [flag], editor)
    transitions.ring(bells)
    assert len(redis_conn.queue().job_ids) == 1


def test_warming_a_worker_up_changes_nothing_and_leaves_no_transaction(
        clock, make, project, editor, envs, two_stage, work):
    sweep.warm_up()  # no run yet
    flag = make.feature(project)
    [bell] = add(project, two_stage, [flag], editor)
    sweep.warm_up()  # a run in flight, its pipeline read
    assert not db.session().in_transaction()
    assert (the_run(flag).version, the_run(flag).stage_position) == (bell.version, 0)
    assert state(flag, envs["Development"]) == (False, None)
    work()  # the job still moves it
    assert state(flag, envs["Development"]) == (True, None)


def test_a_job_that_ends_on_a_read_leaves_no_transaction_to_the_next(clock, make, project):
    # On SQLite a transaction reads one snapshot: a drain job run in the transaction the job
    # before it left open missed the runs other processes had committed since.
    queue = redis_conn.queue()
    queue.enqueue(webhook_delivery.events_waiting)  # "anything to send?": a read, no commit
    JobWorker([queue], connection=redis_conn.connection()).work(burst=True)
    assert not db.session().in_transaction()


def test_duplicate_delivery_writes_one_entry(clock, make, project, editor, envs, two_stage, work):
    flag = make.feature(project)
    [bell] = add(project, two_stage, [flag], editor)
    queue = Queue(redis_conn.QUEUE_NAME, connection=redis_conn.connection())
    for n in range(3):  # the same job delivered again under other ids
        queue.enqueue(transitions.advance, bell.run_id, bell.version, job_id=f"again-{n}")
    work()
    assert len(entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", flag)) == 1
    assert len(entries("RELEASE_PIPELINE_FEATURE_ADDED", flag)) == 1


def test_a_job_that_fires_early_reschedules_itself(clock, make, project, editor, envs, two_stage,
                                                   work):
    flag = make.feature(project)
    add(project, two_stage, [flag], editor)
    work()
    run = the_run(flag)
    clock.shift(timedelta(days=1) - timedelta(seconds=1))
    redis_conn.queue().enqueue(transitions.advance, run.id, run.version,
                               job_id=f"advance-{run.id}-v{run.version}-fired-early")
    work()
    assert state(flag, envs["Staging"]) == (False, None)
    assert f"advance-{run.id}-v{run.version}-early" in (
        redis_conn.queue().scheduled_job_registry.get_job_ids())
    clock.shift(timedelta(seconds=1))
    work()
    assert state(flag, envs["Staging"]) == (True, None)


@pytest.mark.slow
def test_the_sweeper_recovers_everything_after_flushall(clock, make, project, editor, envs,
                                                        make_pipeline, work):
    pipeline = rollout_pipeline(make_pipeline)
    flags = [make.feature(project) for _ in range(20)]
    add(project, pipeline, flags, editor)
    redis_conn.connection().flushall()  # every queued job is gone
    work()
    assert sweep.due_run_ids(100) != []

    assert schedule.sweep_once()["moved"] == 0  # inside the lease: the bell may still ring
    clock.shift(planning.LEASE_GRACE)
    assert schedule.sweep_once()["moved"] == 20
    redis_conn.connection().flushall()  # the rollout's scheduled steps are gone too
    for _ in range(4):
        clock.shift(timedelta(hours=1) + planning.LEASE_GRACE)
        schedule.sweep_once()
    db.session.expire_all()
    assert {r.status for r in db.session.scalars(select(PipelineRun))} == {"launched"}
    assert all(state(f, envs["Production"]) == (True, None) for f in flags)
    assert len(entries("PHASED_ROLLOUT_STATE_CREATED")) == 20


def test_a_failed_enqueue_is_logged_not_raised(clock, make, project, editor, two_stage, app,
                                               caplog):
    flag = make.feature(project)
    bells = controls.add_flags(project, two_stage.id, [flag.id], Actor.for_user(editor))
    app.extensions["railyard.redis"] = redis_conn.redis.Redis.from_url(
        "redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    transitions.ring(bells)
    assert "the sweeper will find them" in caplog.text


def test_two_concurrent_advances_apply_once(clock, make, project, editor, two_stage, app):
    flags = [make.feature(project) for _ in range(30)]
    bells = controls.add_flags(project, two_stage.id, [f.id for f in flags], Actor.for_user(editor))
    barrier = threading.Barrier(3)
    errors = []

    def racer(reverse):
        try:
            with app.app_context():
                barrier.wait()
                sweep.advance_many([(b.run_id, None) for b in (bells[::-1] if reverse else bells)])
                db.session.remove()
        except Exception:  # pragma: no cover - reported below
            import traceback

            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=racer, args=(n % 2,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], errors[0]
    assert len(entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE")) == 30
    assert len(entries("RELEASE_PIPELINE_FEATURE_ADDED")) == 30
