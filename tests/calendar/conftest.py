"""The release calendar's tests share the engine's fixtures (published pipelines built from the
models, a frozen clock) and add admins and calendar helpers."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests.api.conftest import foreign_org_key  # noqa: F401  (shared fixtures)
from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    Notification,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    StageAction,
)
from webapp.services.actors import Actor


@pytest.fixture
def boss(admin):
    return Actor.for_user(admin)


@pytest.fixture
def root(make):
    """A site admin: the organisation's release calendar is theirs."""
    return Actor.for_user(make.user(site_admin=True, email="root@example.com"))


def the_run(feature):
    db.session.rollback()  # a fresh snapshot: see what other connections committed
    return db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == feature.id)
                             .order_by(PipelineRun.id.desc()))


def entries(event_type, **where):
    db.session.rollback()
    query = select(AuditEntry).where(AuditEntry.event_type == event_type)
    for key, value in where.items():
        query = query.where(getattr(AuditEntry, key) == value)
    return list(db.session.scalars(query.order_by(AuditEntry.id)))


def notes(kind):
    db.session.rollback()
    return list(db.session.scalars(select(Notification).where(Notification.kind == kind)))


def utc(*args):
    return datetime(*args, tzinfo=UTC)


# --- the screens' tests (views, holds on cards, the journey) -----------------------------------

MONDAY = datetime(2030, 1, 7, 10, 0, tzinfo=UTC)  # 11:00 in Berlin


@pytest.fixture
def monday(time_machine):
    """The clock frozen on Monday MONDAY; move it with monday.shift(seconds)."""
    time_machine.move_to(MONDAY, tick=False)
    return time_machine


@pytest.fixture
def release(make, project, editor):
    """A published pipeline: Dev at once, then Production after an hour."""
    environments = {e.name: e.id for e in make.environments(project)}
    pipeline = ReleasePipeline(project_id=project.id, name="Release", status="published",
                               created_by_id=editor.id, published_at=MONDAY)
    for position, (name, env, wait) in enumerate(
            [("Dev", "Development", None), ("Prod", "Production", 3600)]):
        stage = PipelineStage(position=position, name=name, environment_id=environments[env],
                              trigger_type="WAIT_FOR" if wait else "ON_ENTER", wait_seconds=wait)
        stage.actions.append(StageAction(position=0, action_type="TOGGLE_FEATURE", enabled=True))
        pipeline.stages.append(stage)
    db.session.add(pipeline)
    db.session.commit()
    return pipeline
