"""Audit log fixtures: entries written through `webapp.services.governance.audit.record`,
pipelines as rows."""

from datetime import UTC, datetime, timedelta

import pytest

from webapp.extensions import db
from webapp.models import ReleasePipeline
from webapp.services.actors import Actor
from webapp.services.governance import audit

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Log:
    """log.entry(project, event_type, ...) adds and commits one audit entry."""

    def entry(self, project, event_type="FEATURE_STATE_UPDATED", message=None, *, actor=None,
              at=None, object_type="feature_state", **kwargs):
        entry = audit.record(actor or Actor("user", "someone@example.com", user_id=None),
                             event_type, message or f"{event_type} happened",
                             project_id=project.id, object_type=object_type, **kwargs)
        if at is not None:
            entry.created_at = at
        db.session.commit()
        return entry

    def many(self, project, count, *, start=T0, step=timedelta(minutes=1), **kwargs):
        """`count` entries one `step` apart, committed at once."""
        entries = []
        for n in range(count):
            entry = audit.record(Actor("user", "bulk@example.com"),
                                 kwargs.get("event_type", "BULK"), f"entry {n}",
                                 project_id=project.id,
                                 object_type=kwargs.get("object_type", "feature_state"),
                                 **{k: v for k, v in kwargs.items()
                                    if k not in ("event_type", "object_type")})
            entry.created_at = start + step * n
            entries.append(entry)
        db.session.commit()
        return entries

    def pipeline(self, project, name="Rollout"):
        pipeline = ReleasePipeline(project_id=project.id, name=name)
        db.session.add(pipeline)
        db.session.commit()
        return pipeline


@pytest.fixture
def log(app):
    return Log()
