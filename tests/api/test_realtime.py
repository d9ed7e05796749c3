"""Realtime: committed changes reach open SDK streams (webapp/streams.py) in under a second."""

import json
import time

import pytest
import redis as redis_lib
import requests
from flagsmith import Flagsmith

from tests.api.conftest import set_state
from webapp.extensions import db
from webapp.services.actors import SYSTEM, Actor
from webapp.services.platform import flag_changes
from webapp.services.platform.realtime import CHANNEL

WITHIN_SECONDS = 1.0


def _events(response):
    """The stream's events as (name, data) pairs, read as they come."""
    name, data = None, None
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            data = json.loads(line.split(":", 1)[1])
        elif line == "" and data is not None:
            yield name, data
            name, data = None, None


def _until(condition, seconds=WITHIN_SECONDS):
    """Poll `condition` until true or `seconds` pass; returns the time it took (or fails)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < seconds, "not within the deadline"
        time.sleep(0.01)
    return time.monotonic() - start


def _wait_for_streams(server, n):
    _until(lambda: server.open_streams == n, seconds=5)


def _enable_checkout(platform, env):
    flag_changes.apply_change(
        {"kind": "state", "environment_id": env.id, "feature_id": platform.checkout.id,
         "enabled": True}, Actor.for_pipeline("Checkout rollout"), project_id=platform.project.id,
        event_type="FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE", message="enable new_checkout")
    db.session.commit()


def _next_message(pubsub, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.05)
        if message is not None and message["type"] == "message":
            return json.loads(message["data"])
    return None


def test_a_commit_publishes_and_a_rollback_does_not(app, platform, redis_url):
    pubsub = redis_lib.Redis.from_url(redis_url).pubsub()
    pubsub.subscribe(CHANNEL)
    set_state(platform.production, platform.banner, enabled=False)
    assert _next_message(pubsub, 2)["environment_id"] == platform.production.id
    flag_changes.apply_change(
        {"kind": "state", "environment_id": platform.development.id,
         "feature_id": platform.banner.id, "enabled": False}, SYSTEM,
        project_id=platform.project.id, event_type="FEATURE_STATE_UPDATED", message="x")
    db.session.rollback()
    set_state(platform.production, platform.limit, enabled=False)
    # The next message is this commit's: the rolled-back change published nothing.
    assert _next_message(pubsub, 2)["environment_id"] == platform.production.id
    pubsub.close()


def test_the_stream_sends_flagsmiths_event_on_a_change(platform, stream_server):
    url, server = stream_server
    key = platform.production.client_key
    with requests.get(f"{url}sse/environments/{key}/stream", stream=True, timeout=10,
                      headers={"Origin": "http://shop.example"}) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        events = _events(response)
        # On connect, the environment's last change (the fixture's), so that a change between
        # an SDK's first fetch and its connection is not missed.
        name, data = next(events)
        assert name == "environment_updated" and data["updated_at"] <= time.time()
        _wait_for_streams(server, 1)
        before = time.time()
        _enable_checkout(platform, platform.production)
        # (The announcement may come twice when a stream opens as the server subscribes.)
        name, data = next((n, d) for n, d in events if d["updated_at"] >= before)
        assert name == "environment_updated" and data["updated_at"] <= time.time()
        assert time.time() - before < WITHIN_SECONDS
    _wait_for_streams(server, 0)  # a closed stream is forgotten


@pytest.mark.parametrize("path, status", [
    ("sse/environments/not-a-key/stream", 404), ("sse/environments/", 404), ("flags/", 404)])
def test_unknown_keys_and_paths_are_404(platform, stream_server, path, status):
    url, server = stream_server
    response = requests.get(f"{url}{path}", timeout=5)
    assert response.status_code == status and response.json()["detail"]
    assert server.open_streams == 0


def test_the_python_sdk_sees_a_pipeline_step_without_polling(platform, stream_server,
                                                             live_server):
    url, server = stream_server
    client = Flagsmith(environment_key=platform.production.server_key,
                       api_url=f"{live_server}/api/v1/", enable_local_evaluation=True,
                       enable_realtime_updates=True, realtime_api_url=url)
    try:
        assert not client.get_environment_flags().is_feature_enabled("new_checkout")
        _wait_for_streams(server, 1)
        _enable_checkout(platform, platform.production)
        took = _until(lambda: client.get_environment_flags().is_feature_enabled("new_checkout"))
        assert took < WITHIN_SECONDS
        # Another environment's change is not sent to this stream.
        assert server.streams.keys() == {platform.production.id}
    finally:
        client.event_stream_thread.stop()
        client.session.close()
