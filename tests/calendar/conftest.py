"""A frozen clock on a Monday, the project's environments, a published pipeline built from the
models (Development at once, Production after an hour), and a real RQ worker in burst mode."""

from datetime import UTC, datetime

import pytest
from rq import SimpleWorker

from webapp import redis_conn
from webapp.extensions import db
from webapp.models import PipelineStage, ReleasePipeline, StageAction

START = datetime(2030, 1, 7, 10, 0, tzinfo=UTC)  # Monday 11:00 in Berlin


@pytest.fixture
def clock(time_machine):
    """The clock frozen at START; move it with clock.shift(seconds) / clock.move_to(dt)."""
    time_machine.move_to(START, tick=False)
    return time_machine


@pytest.fixture
def envs(make, project):
    return {e.name: e for e in make.environments(project)}


@pytest.fixture
def release(project, editor, envs):
    """Dev at once, then Production after an hour."""
    pipeline = ReleasePipeline(project_id=project.id, name="Release", status="published",
                               created_by_id=editor.id, published_at=START)
    for position, (name, env, wait) in enumerate(
            [("Dev", "Development", None), ("Prod", "Production", 3600)]):
        stage = PipelineStage(position=position, name=name, environment_id=envs[env].id,
                              trigger_type="WAIT_FOR" if wait else "ON_ENTER", wait_seconds=wait)
        stage.actions.append(StageAction(position=0, action_type="TOGGLE_FEATURE", enabled=True))
        pipeline.stages.append(stage)
    db.session.add(pipeline)
    db.session.commit()
    return pipeline


@pytest.fixture
def work(app):
    """Run a real RQ SimpleWorker (with its scheduler) in burst mode, in this process."""

    def _work():
        worker = SimpleWorker([redis_conn.queue()], connection=redis_conn.connection())
        worker.work(burst=True, with_scheduler=True)
        db.session.expire_all()
        return worker

    return _work
