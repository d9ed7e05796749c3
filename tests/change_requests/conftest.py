"""A project whose Production needs one approval, a published pipeline Development → Production
built from the models, a second editor to review, and helpers to drive the engine in-process."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    ChangeRequest,
    Environment,
    FeatureState,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    StageAction,
)
from webapp.services.actors import Actor
from webapp.services.runs import controls, sweep

START = datetime(2030, 1, 6, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(START, tick=False)
    return time_machine


@pytest.fixture
def envs(make, project):
    environments = {e.name: e for e in make.environments(project)}
    db.session.execute(update(Environment).where(Environment.id == environments["Production"].id)
                       .values(minimum_change_request_approvals=1))
    db.session.commit()
    return environments


@pytest.fixture
def reviewer(make, project):
    return make.user(project=project, role="editor", email="reviewer@example.com")


@pytest.fixture
def pipeline(project, editor, envs):
    """Development at once (on), then Production at once (on)."""
    return build_pipeline(project, editor, envs, [
        ("Dev", "Development", [{"type": "TOGGLE_FEATURE", "enabled": True}]),
        ("Prod", "Production", [{"type": "TOGGLE_FEATURE", "enabled": True}]),
    ])


def build_pipeline(project, creator, envs, stages, name="Release"):
    pipeline = ReleasePipeline(project_id=project.id, name=name, status="published",
                               created_by_id=creator.id)
    for position, (stage_name, env_name, actions) in enumerate(stages):
        stage = PipelineStage(position=position, name=stage_name,
                              environment_id=envs[env_name].id, trigger_type="ON_ENTER")
        for index, action in enumerate(actions):
            stage.actions.append(StageAction(
                position=index, action_type=action["type"], enabled=action.get("enabled"),
                value=action.get("value"), sets_value="value" in action,
                segment_id=action.get("segment_id"), rollout_initial=action.get("initial"),
                rollout_step=action.get("step"),
                rollout_interval_seconds=action.get("interval")))
        pipeline.stages.append(stage)
    db.session.add(pipeline)
    db.session.commit()
    return pipeline


@pytest.fixture
def to_production(clock, project, editor, pipeline):
    """to_production(flag): add the flag (as the editor) and drive the engine until it waits
    for approval in Production; returns the change request."""

    def _drive(*flags):
        bells = controls.add_flags(project, pipeline.id, [f.id for f in flags],
                                   Actor.for_user(editor))
        sweep.advance_many([(b.run_id, b.version) for b in bells])
        db.session.rollback()  # a fresh snapshot: requests commit in their own sessions
        found = [request_of(f) for f in flags]
        return found[0] if len(found) == 1 else found

    return _drive


def request_of(flag):
    db.session.rollback()  # a fresh snapshot: requests commit in their own sessions
    return db.session.scalar(select(ChangeRequest).where(ChangeRequest.feature_id == flag.id)
                             .order_by(ChangeRequest.id.desc()))


def run_of(flag):
    db.session.rollback()  # a fresh snapshot: requests commit in their own sessions
    return db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == flag.id)
                             .order_by(PipelineRun.id.desc()))


def state(flag, env):
    db.session.rollback()  # a fresh snapshot: requests commit in their own sessions
    row = db.session.scalar(select(FeatureState).where(
        FeatureState.feature_id == flag.id, FeatureState.environment_id == env.id))
    return row.enabled, row.value


def entries(event_type, **where):
    query = select(AuditEntry).where(AuditEntry.event_type == event_type)
    for column, value in where.items():
        query = query.where(getattr(AuditEntry, column) == value)
    return list(db.session.scalars(query.order_by(AuditEntry.id)))


def audit_count():
    from sqlalchemy import func

    return db.session.scalar(select(func.count()).select_from(AuditEntry))
