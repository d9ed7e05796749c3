"""The official Flagsmith Python SDK, unchanged, against Railyard served on a loopback port."""

import time

import pytest
from flagsmith import Flagsmith
from sqlalchemy import select

from tests.api.conftest import set_override
from webapp.extensions import db
from webapp.models import FlagEvaluationCount
from webapp.services.actors import SYSTEM, Actor
from webapp.services.platform import analytics, flag_changes, segments


@pytest.fixture
def sdk(live_server):
    """sdk(key, local=False): a Flagsmith client pointed at the live server."""
    clients = []

    def _client(key, local=False):
        client = Flagsmith(environment_key=key, api_url=f"{live_server}/api/v1/",
                           enable_local_evaluation=local,
                           environment_refresh_interval_seconds=3600)
        clients.append(client)
        return client

    yield _client
    for client in clients:
        if hasattr(client, "environment_data_polling_manager_thread"):
            client.environment_data_polling_manager_thread.stop()
        client.session.close()


def test_environment_flags(sdk, platform):
    flags = sdk(platform.development.client_key).get_environment_flags()
    assert flags.is_feature_enabled("banner_text")
    assert flags.get_feature_value("banner_text") == "hello"
    assert flags.get_feature_value("upload_limit") == 10
    assert not flags.is_feature_enabled("new_checkout")
    assert flags.get_flag("new_checkout").feature_id == platform.checkout.id


def test_identity_flags_with_a_segment_override(sdk, platform):
    client = sdk(platform.development.client_key)
    pro = client.get_identity_flags("ada", {"plan": "pro"})
    assert pro.is_feature_enabled("new_checkout")
    assert pro.get_feature_value("upload_limit") == 100
    free = client.get_identity_flags("bob", {"plan": "free"})
    assert not free.is_feature_enabled("new_checkout")
    assert free.get_feature_value("upload_limit") == 10
    # Persisted traits count on the next call without traits.
    assert client.get_identity_flags("ada").is_feature_enabled("new_checkout")
    assert not client.get_identity_flags("ada", {"plan": {"value": "free", "transient": True}}) \
        .is_feature_enabled("new_checkout")


def test_local_evaluation_agrees_with_remote(sdk, platform, project):
    # A 50 % split and a hidden phased-rollout segment, so that hashing must agree too.
    half = segments.create_segment(project, "Half", [
        {"type": "ALL", "conditions": [{"property": "", "operator": "PERCENTAGE_SPLIT",
                                        "value": "50"}], "rules": []}], SYSTEM)
    rollout = segments.create_segment(project, "Rollout", [
        {"type": "ANY", "conditions": [
            {"property": "", "operator": "PERCENTAGE_SPLIT", "value": "30"},
            {"property": "age", "operator": "GREATER_THAN_INCLUSIVE", "value": "65"}],
         "rules": []}], SYSTEM, is_system=True)
    set_override(platform.development, platform.banner, half, True, "half")
    set_override(platform.development, platform.banner, rollout, True, "rollout", priority=-1)
    remote = sdk(platform.development.client_key)
    local = sdk(platform.development.server_key, local=True)
    values = set()
    for number in range(60):
        traits = {"plan": "pro" if number % 3 == 0 else "free", "age": 20 + number}
        identifier = f"user-{number}"
        remote_flags = remote.get_identity_flags(identifier, traits).all_flags()
        local_flags = local.get_identity_flags(identifier, traits).all_flags()
        as_tuples = lambda flags: sorted((f.feature_name, f.enabled, f.value) for f in flags)  # noqa: E731
        assert as_tuples(remote_flags) == as_tuples(local_flags), identifier
        values.add(local.get_identity_flags(identifier, traits).get_feature_value("banner_text"))
    assert values == {"hello", "half", "rollout"}
    env_remote = sorted((f.feature_name, f.enabled, f.value)
                        for f in remote.get_environment_flags().all_flags())
    env_local = sorted((f.feature_name, f.enabled, f.value)
                       for f in local.get_environment_flags().all_flags())
    assert env_remote == env_local


def test_a_pipeline_step_is_seen_on_the_next_read(sdk, platform):
    remote = sdk(platform.production.client_key)
    local = sdk(platform.production.server_key, local=True)
    assert not remote.get_environment_flags().is_feature_enabled("new_checkout")
    assert not local.get_environment_flags().is_feature_enabled("new_checkout")
    flag_changes.apply_change(
        {"kind": "state", "environment_id": platform.production.id,
         "feature_id": platform.checkout.id, "enabled": True},
        Actor.for_pipeline("Checkout rollout"), project_id=platform.project.id,
        event_type="FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE",
        message="Stage Production: enable new_checkout")
    db.session.commit()
    assert remote.get_environment_flags().is_feature_enabled("new_checkout")
    assert remote.get_identity_flags("anyone").is_feature_enabled("new_checkout")
    local.update_environment()  # what the SDK's polling thread does every interval
    assert local.get_environment_flags().is_feature_enabled("new_checkout")


def test_analytics_from_the_sdk_are_counted(live_server, platform):
    client = Flagsmith(environment_key=platform.development.client_key,
                       api_url=f"{live_server}/api/v1/", enable_analytics=True)
    try:
        flags = client.get_environment_flags()
        for _ in range(3):
            flags.is_feature_enabled("new_checkout")
        flags.get_feature_value("banner_text")
        client._analytics_processor.flush()  # what its timer does every 10 s
        deadline = time.monotonic() + 5
        while not analytics.flush():  # the post is sent from the SDK's own thread pool
            assert time.monotonic() < deadline, "the SDK's analytics never arrived"
            time.sleep(0.05)
    finally:
        client.session.close()
    db.session.rollback()
    counts = dict(db.session.execute(
        select(FlagEvaluationCount.feature_id, FlagEvaluationCount.count)
        .where(FlagEvaluationCount.environment_id == platform.development.id)).all())
    assert counts == {platform.checkout.id: 3, platform.banner.id: 1}
