"""The SDK API's wire format, keys, caching and identity evaluation (test client)."""

import pytest
from sqlalchemy import select

from tests.api.conftest import set_state
from webapp.extensions import db
from webapp.models import Identity
from webapp.services.actors import SYSTEM
from webapp.services.platform import segments


def _get(client, path, key, **headers):
    return client.get(path, headers={"X-Environment-Key": key, **headers})


def test_environment_flags_in_flagsmith_shape(client, platform):
    response = _get(client, "/api/v1/flags/", platform.development.client_key)
    assert response.status_code == 200
    flags = {flag["feature"]["name"]: flag for flag in response.get_json()}
    assert set(flags) == {"new_checkout", "banner_text", "upload_limit"}
    banner = flags["banner_text"]
    assert banner["enabled"] is True and banner["feature_state_value"] == "hello"
    assert banner["environment"] == platform.development.id
    assert banner["identity"] is None and banner["feature_segment"] is None
    assert banner["feature"]["id"] == platform.banner.id
    assert banner["feature"]["type"] == "STANDARD"
    assert flags["new_checkout"]["enabled"] is False  # the segment override is not applied


def test_one_feature_and_unknown_feature(client, platform):
    response = client.get("/api/v1/flags/?feature=upload_limit",
                          headers={"X-Environment-Key": platform.development.server_key})
    assert response.get_json()["feature_state_value"] == 10
    missing = _get(client, "/api/v1/flags/?feature=nope", platform.development.client_key)
    assert missing.status_code == 404 and "detail" in missing.get_json()


@pytest.mark.parametrize("headers, status", [
    ({}, 401),
    ({"X-Environment-Key": "not-a-key"}, 401),
    ({"X-Environment-Key": "ser.not-a-key"}, 401),
])
def test_missing_or_unknown_key(client, platform, headers, status):
    for path in ("/api/v1/flags/", "/api/v1/environment-document/",
                 "/api/v1/identities/?identifier=a"):
        response = client.get(path, headers=headers)
        assert response.status_code == status
        assert response.is_json and response.get_json()["detail"]


def test_environment_document_needs_a_server_key(client, platform):
    refused = _get(client, "/api/v1/environment-document/", platform.development.client_key)
    assert refused.status_code == 403 and "server" in refused.get_json()["detail"]
    document = _get(client, "/api/v1/environment-document/",
                    platform.development.server_key).get_json()
    assert document["api_key"] == platform.development.client_key
    assert document["name"] == "Development"
    assert document["updated_at"]
    (segment,) = document["project"]["segments"]
    assert segment["id"] == platform.pro.id
    assert segment["rules"][0]["conditions"] == [
        {"operator": "EQUAL", "property_": "plan", "value": "pro"}]
    overrides = {fs["feature"]["name"]: fs for fs in segment["feature_states"]}
    assert overrides["new_checkout"]["enabled"] is True
    assert overrides["upload_limit"]["feature_state_value"] == 100
    assert overrides["upload_limit"]["feature_segment"]["priority"] == 0
    assert {fs["feature"]["name"] for fs in document["feature_states"]} == {
        "new_checkout", "banner_text", "upload_limit"}


def test_etag_and_if_none_match_until_a_change(client, platform):
    key = platform.development.client_key
    first = _get(client, "/api/v1/flags/", key)
    etag = first.headers["ETag"]
    again = _get(client, "/api/v1/flags/", key, **{"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    set_state(platform.development, platform.checkout, enabled=True)
    changed = _get(client, "/api/v1/flags/", key, **{"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    flags = {f["feature"]["name"]: f for f in changed.get_json()}
    assert flags["new_checkout"]["enabled"] is True


def test_environments_are_separate(client, platform):
    set_state(platform.production, platform.banner, value="prod banner")
    dev = _get(client, "/api/v1/flags/?feature=banner_text", platform.development.client_key)
    prod = _get(client, "/api/v1/flags/?feature=banner_text", platform.production.client_key)
    assert dev.get_json()["feature_state_value"] == "hello"
    assert prod.get_json()["feature_state_value"] == "prod banner"


def _identify(client, key, identifier, traits=(), **extra):
    body = {"identifier": identifier,
            "traits": [{"trait_key": k, "trait_value": v} for k, v in traits], **extra}
    return client.post("/api/v1/identities/", json=body, headers={"X-Environment-Key": key})


def _flags(body):
    return {f["feature"]["name"]: (f["enabled"], f["feature_state_value"]) for f in body["flags"]}


def test_identity_in_segment_gets_the_override(client, platform):
    key = platform.development.client_key
    body = _identify(client, key, "ada", [("plan", "pro")]).get_json()
    assert body["identifier"] == "ada"
    assert _flags(body)["new_checkout"] == (True, None)
    assert _flags(body)["upload_limit"] == (True, 100)
    assert body["traits"] == [{"trait_key": "plan", "trait_value": "pro"}]
    other = _identify(client, key, "bob", [("plan", "free")]).get_json()
    assert _flags(other)["new_checkout"] == (False, None)
    assert _flags(other)["upload_limit"] == (True, 10)


def test_traits_persist_and_merge(client, platform):
    key = platform.development.client_key
    _identify(client, key, "ada", [("plan", "pro"), ("age", 31)])
    later = _identify(client, key, "ada", [("country", "FR")]).get_json()
    assert {t["trait_key"]: t["trait_value"] for t in later["traits"]} == {
        "plan": "pro", "age": 31, "country": "FR"}
    assert _flags(later)["new_checkout"] == (True, None)
    fetched = client.get("/api/v1/identities/?identifier=ada", headers={"X-Environment-Key": key})
    assert _flags(fetched.get_json())["new_checkout"] == (True, None)
    removed = _identify(client, key, "ada", [("plan", None)]).get_json()
    assert "plan" not in {t["trait_key"] for t in removed["traits"]}
    assert _flags(removed)["new_checkout"] == (False, None)


def test_transient_identity_and_trait_are_not_stored(client, platform):
    key = platform.development.client_key
    body = _identify(client, key, "ghost", [("plan", "pro")], transient=True).get_json()
    assert _flags(body)["new_checkout"] == (True, None)
    client.post("/api/v1/identities/", headers={"X-Environment-Key": key}, json={
        "identifier": "eve", "traits": [{"trait_key": "plan", "trait_value": "pro",
                                          "transient": True},
                                         {"trait_key": "age", "trait_value": 5}]})
    db.session.rollback()  # end the test's read snapshot (SQLite WAL) to see what requests wrote
    stored = dict(db.session.execute(select(Identity.identifier, Identity.traits)).all())
    assert stored == {"eve": {"age": 5}}


@pytest.mark.parametrize("body", [
    {"traits": [{"trait_key": "plan", "trait_value": "pro"}]},
    {"identifier": "", "traits": [{"trait_key": "plan", "trait_value": "pro"}]},
    {"identifier": "   ", "traits": [{"trait_key": "plan", "trait_value": "pro"}]},
    {"identifier": None, "traits": [{"trait_key": "plan", "trait_value": "pro"}]},
])
def test_an_identity_without_identifier_is_transient(client, platform, body):
    """flagsmith-cli identifies with no identifier: evaluated on its traits, never stored."""
    key = platform.development.client_key
    first = client.post("/api/v1/identities/", json=body, headers={"X-Environment-Key": key})
    assert first.status_code == 200
    assert _flags(first.get_json())["new_checkout"] == (True, None)
    assert first.get_json()["traits"] == [{"trait_key": "plan", "trait_value": "pro"}]
    # Named by its traits: the same traits fall in the same percentage-split bucket each time.
    again = client.post("/api/v1/identities/", json=body, headers={"X-Environment-Key": key})
    assert again.get_json()["identifier"] == first.get_json()["identifier"]
    bare = client.post("/api/v1/identities/", json={}, headers={"X-Environment-Key": key})
    assert bare.status_code == 200 and _flags(bare.get_json())["new_checkout"] == (False, None)
    db.session.rollback()
    assert db.session.scalars(select(Identity)).all() == []


@pytest.mark.parametrize("body", [
    None, [], {"identifier": 5}, {"identifier": "x" * 2001},
    {"identifier": "a", "traits": "x"}, {"identifier": "a", "traits": [{"trait_value": 1}]},
    {"identifier": "a", "traits": [{"trait_key": "k", "trait_value": {"x": 1}}]},
])
def test_bad_identity_requests_are_4xx_json(client, platform, body):
    response = client.post("/api/v1/identities/", json=body,
                           headers={"X-Environment-Key": platform.development.client_key})
    assert 400 <= response.status_code < 500
    assert response.get_json()["detail"]


def test_hidden_system_segment_is_evaluated(client, platform, project):
    rollout = segments.create_segment(project, "Phased rollout: banner_text", [
        {"type": "ALL", "conditions": [{"property": "", "operator": "PERCENTAGE_SPLIT",
                                        "value": "100"}], "rules": []}
    ], SYSTEM, is_system=True)
    from tests.api.conftest import set_override

    set_override(platform.development, platform.banner, rollout, True, "rolled out")
    body = _identify(client, platform.development.client_key, "zed").get_json()
    assert _flags(body)["banner_text"] == (True, "rolled out")


def test_a_segment_reading_another_flag_by_jsonpath_sees_it(client, platform, project):
    """Flags no segment overrides are left out of an identify's evaluation, unless a condition
    reads the context by JSONPath: it may read them (here banner_text, on by default)."""
    from tests.api.conftest import set_override

    banner_on = segments.create_segment(project, "Banner on", [
        {"type": "ALL", "conditions": [{"property": "$.flags.banner_text.enabled",
                                        "operator": "EQUAL", "value": "true"}], "rules": []}
    ], SYSTEM)
    set_override(platform.development, platform.checkout, banner_on, True)
    body = _identify(client, platform.development.client_key, "zed").get_json()
    assert _flags(body)["new_checkout"] == (True, None)
