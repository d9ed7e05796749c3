"""Fixtures for the API tests: a project with flags, a segment override, and keys."""

from dataclasses import dataclass

import pytest

from webapp.extensions import db
from webapp.models import Environment, Feature, Segment
from webapp.services.actors import SYSTEM
from webapp.services.platform import api_keys, flag_changes, sdk_documents


@dataclass
class Platform:
    project: object
    development: Environment
    production: Environment
    checkout: Feature
    banner: Feature
    limit: Feature
    pro: Segment


def set_override(env, feature, segment, enabled, value=None, priority=None):
    change = {"kind": "override", "environment_id": env.id, "feature_id": feature.id,
              "segment_id": segment.id, "enabled": enabled, "value": value}
    if priority is not None:
        change["priority"] = priority
    flag_changes.apply_change(change, SYSTEM, project_id=feature.project_id,
                              event_type="SEGMENT_OVERRIDE_SET", message="test override")
    db.session.commit()


def set_state(env, feature, **fields):
    flag_changes.apply_change({"kind": "state", "environment_id": env.id,
                               "feature_id": feature.id, **fields}, SYSTEM,
                              project_id=feature.project_id, event_type="FEATURE_STATE_UPDATED",
                              message="test change")
    db.session.commit()


@pytest.fixture(autouse=True)
def _fresh_sdk_cache():
    sdk_documents.clear_cache()
    yield
    sdk_documents.clear_cache()


@pytest.fixture
def platform(make, project):
    development, _staging, production = make.environments(project)
    checkout = make.feature(project, "new_checkout")
    banner = make.feature(project, "banner_text", value_type="string", default_value="hello",
                          default_enabled=True)
    limit = make.feature(project, "upload_limit", value_type="integer", default_value=10,
                         default_enabled=True)
    pro = make.segment(project, "Pro users", [
        {"type": "ALL", "conditions": [{"property": "plan", "operator": "EQUAL", "value": "pro"}],
         "rules": []}
    ])
    set_override(development, checkout, pro, True)
    set_override(development, limit, pro, True, 100)
    db.session.refresh(development)
    db.session.refresh(production)
    return Platform(project, development, production, checkout, banner, limit, pro)


@pytest.fixture
def org_key(project):
    """An organisation API key (the secret) for the project's organisation."""
    _row, secret = api_keys.create_organisation_key(project.organisation, "CI", SYSTEM)
    return secret


# --- Calling the admin API as someone (shared by the governance tests) ---


def api(client, method, path, key=None, token=None, **kwargs):
    """Call /api/v1/<path> with an organisation key or a personal token."""
    headers = dict(kwargs.pop("headers", None) or {})
    if key:
        headers["Authorization"] = f"Api-Key {key}"
    if token:
        headers["Authorization"] = f"Token {token}"
    response = client.open(f"/api/v1/{path}", method=method, headers=headers, **kwargs)
    db.session.rollback()  # end the test's SQLite read snapshot: see (and write after) the request
    return response


def token_for(user):
    """A new personal token (the secret) of `user`."""
    return api_keys.create_user_token(user, "laptop", SYSTEM)[1]


@pytest.fixture
def foreign_org_key(make):
    """A key of another organisation, which owns project "Elsewhere"."""
    from webapp.models import Organisation
    from webapp.services.platform import projects

    organisation = Organisation(name="Other Org")
    db.session.add(organisation)
    db.session.commit()
    projects.create_project("Elsewhere", SYSTEM, organisation=organisation)
    return api_keys.create_organisation_key(organisation, "Other", SYSTEM)[1]


# --- Release pipelines (tests/api/test_release_pipelines*.py) ---


@pytest.fixture
def pipeline_clock(time_machine):
    """The clock frozen at 2030-01-06 09:00 UTC; move it with pipeline_clock.shift(seconds)."""
    from datetime import UTC, datetime

    time_machine.move_to(datetime(2030, 1, 6, 9, 0, tzinfo=UTC), tick=False)
    return time_machine


@pytest.fixture
def pipeline_worker(app):
    """Run a real RQ SimpleWorker (with its scheduler) in burst mode, in this process."""
    from rq import SimpleWorker

    from webapp import redis_conn

    def _work():
        SimpleWorker([redis_conn.queue()], connection=redis_conn.connection()).work(
            burst=True, with_scheduler=True)
        db.session.rollback()

    return _work
