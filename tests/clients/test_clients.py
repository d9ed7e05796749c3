"""The official Flagsmith clients, unchanged, against a live Railyard: flagsmith-nodejs,
flagsmith-cli, and the browser SDK in Chromium from another origin (CORS, realtime, analytics).
The Python SDK's own tests are tests/api/test_sdk_live.py and tests/api/test_realtime.py."""

import json
import subprocess
import time

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tests.api.conftest import platform  # noqa: F401  (the API tests' flags and segment)
from webapp.extensions import db
from webapp.models import FlagEvaluationCount, Identity
from webapp.services.actors import Actor
from webapp.services.platform import analytics, flag_changes

pytestmark = pytest.mark.slow


def _node(node_clients, *args, timeout=60):
    done = subprocess.run(["node", *args], cwd=node_clients, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _counts(environment):
    db.session.rollback()
    return {row.feature_id: row.count for row in db.session.scalars(
        select(FlagEvaluationCount).where(FlagEvaluationCount.environment_id == environment.id))}


def test_flagsmith_nodejs(node_clients, live_server, platform):  # noqa: F811
    env = platform.development
    out = json.loads(_node(node_clients, "node_sdk.mjs", f"{live_server}/api/v1/",
                           env.client_key, env.server_key))
    assert out["environment"]["banner_text"] == [True, "hello"]
    assert out["environment"]["new_checkout"] == [False, None]
    assert out["pro"]["new_checkout"] == [True, None] and out["pro"]["upload_limit"] == [True, 100]
    assert out["localPro"] == out["pro"]  # local evaluation agrees with the server
    # A transient trait counts for its evaluation only.
    assert out["transient"]["new_checkout"] == [True, None]
    assert out["eveLater"]["new_checkout"] == [False, None]
    db.session.rollback()
    eve = db.session.scalar(select(Identity).where(Identity.identifier == "eve"))
    assert eve is not None and eve.traits == {}
    # Its analytics were posted: counted per flag once the sweeper flushes.
    analytics.flush()
    assert _counts(env)[platform.checkout.id] >= 1


def test_flagsmith_cli_get(node_clients, live_server, platform, tmp_path):  # noqa: F811
    """The README's first example: no identity, so a transient identity is evaluated."""
    output = tmp_path / "flagsmith.json"
    _node(node_clients, "node_modules/.bin/flagsmith", "get", platform.development.client_key,
          "-a", f"{live_server}/api/v1/", "-o", str(output))
    state = json.loads(output.read_text())
    assert state["flags"]["banner_text"]["value"] == "hello"
    assert state["flags"]["banner_text"]["enabled"] is True
    assert state["flags"]["new_checkout"]["enabled"] is False
    db.session.rollback()
    assert db.session.scalars(select(Identity)).all() == []  # nothing stored
    # With an identity and a trait, the segment override applies.
    _node(node_clients, "node_modules/.bin/flagsmith", "get", platform.development.client_key,
          "-a", f"{live_server}/api/v1/", "-o", str(output), "-i", "ada", "-t", "plan=pro")
    assert json.loads(output.read_text())["flags"]["new_checkout"]["enabled"] is True
    # The environment document with a server key.
    _node(node_clients, "node_modules/.bin/flagsmith", "get", platform.development.server_key,
          "-a", f"{live_server}/api/v1/", "-o", str(output), "-e", "environment")
    assert json.loads(output.read_text())["api_key"] == platform.development.client_key


@pytest.mark.e2e
@pytest.mark.on_postgresql  # the SDK's fast path runs PostgreSQL-specific SQL there
def test_browser_sdk_from_another_origin_with_realtime_and_analytics(
        node_clients, live_server, second_origin, stream_server, page, platform):  # noqa: F811
    stream_url, streams = stream_server
    env = platform.development
    assert second_origin.rsplit(":", 1)[1] != live_server.rsplit(":", 1)[1]
    page.goto(f"{second_origin}/browser.html?key={env.client_key}"
              f"&api={live_server}/api/v1/&realtime={stream_url}")
    expect(page.locator("#banner")).to_have_text("hello")
    expect(page.locator("#checkout")).to_have_text("off")
    deadline = time.monotonic() + 10
    while streams.open_streams < 1:  # the SDK opens its stream right after the first flags
        assert time.monotonic() < deadline, "the browser SDK opened no stream"
        time.sleep(0.02)
    flag_changes.apply_change(
        {"kind": "state", "environment_id": env.id, "feature_id": platform.checkout.id,
         "enabled": True}, Actor.for_pipeline("Checkout rollout"), project_id=env.project_id,
        event_type="FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", message="enable new_checkout")
    db.session.commit()
    # Pushed, not polled: the page never asks again on its own.
    expect(page.locator("#checkout")).to_have_text("on", timeout=2000)
    page.evaluate("flushAnalytics()")
    deadline = time.monotonic() + 5
    while not analytics.flush() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _counts(env).get(platform.checkout.id, 0) >= 1
