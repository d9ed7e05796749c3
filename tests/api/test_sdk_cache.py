"""The SDK API answers from a per-process cache of key lookups on PostgreSQL: a change made by
another process must be seen by the next reads all the same
(webapp/services/platform/revisions.py)."""

import os
import subprocess
import sys
import time

import pytest
from sqlalchemy import create_engine, text

from tests.api.conftest import set_state
from webapp.extensions import db
from webapp.services.platform import revisions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Another process enabling new_checkout in an environment through the one service for changes.
CHANGE = """
import sys
from webapp import create_app
from webapp.extensions import db
from webapp.services.platform import flag_changes
from webapp.services.actors import SYSTEM
url, instance, environment_id, feature_id, project_id = sys.argv[1:6]
app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": "redis://unused",
                  "SECRET_KEY": "test", "INSTANCE_PATH": instance})
with app.app_context():
    flag_changes.apply_change({"kind": "state", "environment_id": int(environment_id),
                               "feature_id": int(feature_id), "enabled": True},
                              SYSTEM, project_id=int(project_id),
                              event_type="FEATURE_STATE_UPDATED", message="elsewhere")
    db.session.commit()
    db.engine.dispose()
"""


def _checkout_enabled(client, key) -> bool:
    response = client.get("/api/v1/flags/", headers={"X-Environment-Key": key})
    assert response.status_code == 200
    return {f["feature"]["name"]: f["enabled"] for f in response.get_json()}["new_checkout"]


def _change_elsewhere(app, tmp_path, platform) -> None:
    subprocess.run(
        [sys.executable, "-c", CHANGE, app.config["SQLALCHEMY_DATABASE_URI"], str(tmp_path),
         str(platform.production.id), str(platform.checkout.id), str(platform.project.id)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, check=True)


def _seen_within(client, key, seconds: float) -> float:
    """How long after now the change showed (polling); fails after `seconds`."""
    started = time.monotonic()
    while not _checkout_enabled(client, key):
        assert time.monotonic() - started < seconds, "the change was not seen"
        time.sleep(0.005)
    return time.monotonic() - started


def _listening() -> None:
    """On PostgreSQL, until this process's listener listens (before, nothing is cached)."""
    cache = revisions.key_cache(db.engine)
    started = time.monotonic()
    while cache is not None and not cache.listening:
        assert time.monotonic() - started < 5, "the listener did not start"
        time.sleep(0.01)


@pytest.mark.slow
def test_a_change_committed_by_another_process_is_seen(app, client, platform, tmp_path):
    key = platform.production.client_key
    _listening()
    assert not _checkout_enabled(client, key)
    assert not _checkout_enabled(client, key)  # answered from the cache on PostgreSQL
    _change_elsewhere(app, tmp_path, platform)
    assert _seen_within(client, key, 1.0) < 0.5


def test_a_change_in_this_process_is_seen_by_the_very_next_read(client, platform):
    key = platform.production.client_key
    assert not _checkout_enabled(client, key)
    set_state(platform.production, platform.checkout, enabled=True)
    assert _checkout_enabled(client, key)


@pytest.mark.postgresql_only
def test_key_lookups_are_cached_until_a_revision_moves(app, client, platform):
    key = platform.production.client_key
    cache = revisions.key_cache(db.engine)
    _listening()
    # The fixture's own commits notify too; one landing just after the listener started drops
    # the answer read meanwhile (correctly). Read until an answer is kept.
    started = time.monotonic()
    while key not in cache._entries:
        assert time.monotonic() - started < 5, "the answer was never cached"
        _checkout_enabled(client, key)
    set_state(platform.development, platform.checkout, enabled=True)  # another environment
    assert key not in cache._entries


@pytest.mark.postgresql_only
def test_nothing_is_served_from_the_cache_while_the_listener_is_cut_off(app, client, platform,
                                                                       tmp_path):
    key = platform.production.client_key
    _listening()
    assert not _checkout_enabled(client, key)
    admin = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])
    with admin.begin() as conn:
        killed = conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = :name"),
            {"name": revisions.LISTENER_NAME}).all()
    admin.dispose()
    assert killed
    _change_elsewhere(app, tmp_path, platform)  # its notification reaches no listener here
    assert _seen_within(client, key, 1.0) < 0.5
