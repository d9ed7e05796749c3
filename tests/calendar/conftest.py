"""The release calendar's tests share the engine's fixtures (published pipelines built from the
models, a frozen clock) and add admins and calendar helpers."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests.api.conftest import foreign_org_key  # noqa: F401  (shared fixtures)
from tests.engine.conftest import clock, envs, make_pipeline, two_stage, work  # noqa: F401
from webapp.extensions import db
from webapp.models import AuditEntry, Notification, PipelineRun
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
