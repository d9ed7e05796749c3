"""Shared fixtures of the engine's world: a frozen clock, the project's environments by name,
published pipelines built straight from the models (the builder's services are tested in
tests/pipelines), and a real RQ worker in burst mode. One copy for every test folder; a folder
that needs more (approvals on Production, a fresh read snapshot) overrides `envs` by asking for
it."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from rq import SimpleWorker

from webapp import redis_conn
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Environment, PipelineStage, ReleasePipeline, StageAction

START = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)
TOGGLE_ON = {"type": "TOGGLE_FEATURE", "enabled": True}


@pytest.fixture
def clock(time_machine):
    """The clock frozen at START; move it with clock.shift(seconds) / clock.move_to(dt)."""
    time_machine.move_to(START, tick=False)
    return time_machine


@pytest.fixture
def envs(make, project) -> dict[str, Environment]:
    """The project's environments by name: Development, Staging, Production."""
    return {e.name: e for e in make.environments(project)}


@pytest.fixture
def make_pipeline(project, editor, envs) -> Callable[..., ReleasePipeline]:
    """make_pipeline([{"env": "Development", "name": ..., "trigger": "ON_ENTER", "wait": None,
    "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}, ...]}, ...], status=...).

    A stage's environment defaults to Development and its actions to turning the flag on."""

    def _make(stages: list[dict[str, Any]], *, name: str = "Release",
              status: str = "published", project=project, created_by=editor,
              environments: dict[str, Environment] | None = None) -> ReleasePipeline:
        environments = environments or envs
        pipeline = ReleasePipeline(project_id=project.id, name=name, status=status,
                                   created_by_id=created_by.id if created_by else None,
                                   published_at=now() if status == "published" else None)
        for position, spec in enumerate(stages):
            stage = PipelineStage(
                position=position, name=spec.get("name", f"Stage {position + 1}"),
                environment_id=environments[spec.get("env", "Development")].id,
                trigger_type=spec.get("trigger", "ON_ENTER"), wait_seconds=spec.get("wait"))
            for index, action in enumerate(spec.get("actions", [TOGGLE_ON])):
                stage.actions.append(StageAction(
                    position=index, action_type=action["type"], enabled=action.get("enabled"),
                    value=action.get("value"), sets_value="value" in action,
                    segment_id=action.get("segment_id"),
                    rollout_initial=action.get("initial"), rollout_step=action.get("step"),
                    rollout_interval_seconds=action.get("interval")))
            pipeline.stages.append(stage)
        db.session.add(pipeline)
        db.session.commit()
        return pipeline

    return _make


@pytest.fixture
def two_stage(make_pipeline) -> ReleasePipeline:
    """Development at once, then Staging after a day."""
    return make_pipeline([
        {"env": "Development", "name": "Dev", "actions": [TOGGLE_ON]},
        {"env": "Staging", "name": "Stage", "trigger": "WAIT_FOR", "wait": 86400,
         "actions": [TOGGLE_ON]},
    ], name="Two step")


@pytest.fixture
def work(app) -> Callable[[], SimpleWorker]:
    """Run a real RQ SimpleWorker (with its scheduler) in burst mode, in this process; then
    the test's session reads afresh (what the jobs committed)."""

    def _work() -> SimpleWorker:
        worker = SimpleWorker([redis_conn.queue()], connection=redis_conn.connection())
        worker.work(burst=True, with_scheduler=True)
        db.session.rollback()
        return worker

    return _work
