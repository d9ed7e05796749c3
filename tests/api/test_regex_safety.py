"""Segment REGEX conditions cannot make an SDK request slow, whatever the trait values.

Railyard refuses, at save time, patterns that RE2 cannot take or that backtrack exponentially
in the SDKs' engines; it matches the others with RE2 (linear time); and a refused pattern that
is in the database anyway (saved before the rule) is left out of the environment document, so
its segment matches no one, remotely or in an SDK's local evaluation.
"""

import time

import pytest
from flagsmith import Flagsmith

from tests.api.conftest import api, set_override
from webapp.extensions import db
from webapp.models import Segment

HOSTILE = "(a+)+$"
HOSTILE_TRAIT = "a" * 40 + "!"  # 25 characters took 6 s with Python's re


def _regex_rules(pattern, prop="email"):
    return [{"type": "ALL", "rules": [],
             "conditions": [{"property": prop, "operator": "REGEX", "value": pattern}]}]


@pytest.mark.parametrize(("pattern", "reason"), [
    (HOSTILE, "exponential time"),
    ("(a|ab)*c", "exponential time"),
    (r"([a-z]+\.)+com", "exponential time"),
    ("(a?){20}a{20}", "exponential time"),
    (r"(\w+)@\1", "RE2"),
    ("(?=admin).*", "RE2"),
    ("[a-", "Not a valid regular expression"),
])
def test_the_api_refuses_patterns_that_could_be_slow_with_a_reason(
        client, project, org_key, pattern, reason):
    response = api(client, "POST", f"projects/{project.id}/segments/", key=org_key,
                   json={"name": "Hostile", "rules": _regex_rules(pattern)})
    assert response.status_code == 422
    assert reason in response.get_json()["r0.c0.value"][0]
    assert db.session.query(Segment).filter_by(name="Hostile").count() == 0


@pytest.mark.parametrize("pattern", [
    r"^.*@example\.com$", "(beta|alpha)-[0-9]+", "(a|b)+", r"(\d{3}-){2}\d{4}", ".*.*.*x",
])
def test_ordinary_patterns_are_taken(client, project, org_key, pattern):
    response = api(client, "POST", f"projects/{project.id}/segments/", key=org_key,
                   json={"name": "Fine", "rules": _regex_rules(pattern)})
    assert response.status_code == 201, response.get_json()


def _identify(client, key, traits):
    started = time.perf_counter()
    response = client.post("/api/v1/identities/", headers={"X-Environment-Key": key}, json={
        "identifier": "mallory",
        "traits": [{"trait_key": k, "trait_value": v} for k, v in traits.items()]})
    return response, (time.perf_counter() - started) * 1000


def _document(client, env):
    return client.get("/api/v1/environment-document/",
                      headers={"X-Environment-Key": env.server_key}).get_json()


class _Document:
    """The official SDK's offline handler: local evaluation of a document we fetched."""

    def __init__(self, document):
        self.document = document

    def get_environment(self):
        return self.document


def _local(document, traits):
    flags = Flagsmith(offline_mode=True, offline_handler=_Document(document)) \
        .get_identity_flags("mallory", traits)
    return flags.is_feature_enabled("new_checkout")


def test_a_hostile_pattern_already_in_the_database_is_never_evaluated(client, platform, project):
    # Saved before Railyard refused such patterns: written straight to the table.
    legacy = Segment(project_id=project.id, name="Legacy", rules=_regex_rules(HOSTILE))
    db.session.add(legacy)
    db.session.commit()
    set_override(platform.development, platform.checkout, legacy, True)

    _identify(client, platform.development.client_key, {})  # builds the cached documents
    response, elapsed = _identify(client, platform.development.client_key,
                                  {"email": HOSTILE_TRAIT, "plan": "free"})
    print(f"\nidentity request, hostile trait vs hostile pattern in the DB: {elapsed:.1f} ms")
    assert response.status_code == 200
    assert {f["feature"]["name"]: f["enabled"] for f in response.get_json()["flags"]}[
        "new_checkout"] is False
    # The SDKs are never handed the pattern, so local evaluation cannot run it either.
    document = _document(client, platform.development)
    assert "Legacy" not in [s["name"] for s in document["project"]["segments"]]
    assert HOSTILE not in str(document)
    assert _local(document, {"email": "aaaa"}) is False


def test_patterns_are_matched_in_linear_time_and_still_match(client, platform, project):
    # Taken at save time (no nesting), yet polynomial for a backtracking engine: Python's re
    # needs minutes for this value; Railyard's RE2 answers at once.
    slow_for_backtracking = ".*.*.*.*x"
    matched = Segment(project_id=project.id, name="Polynomial",
                      rules=_regex_rules(slow_for_backtracking))
    db.session.add(matched)
    db.session.commit()
    set_override(platform.development, platform.checkout, matched, True)
    key = platform.development.client_key

    _identify(client, key, {})  # builds the cached documents
    response, elapsed = _identify(client, key, {"email": "a" * 2000})
    print(f"\nidentity request, 2000-character trait vs {slow_for_backtracking}: {elapsed:.1f} ms")
    assert response.status_code == 200
    flags = {f["feature"]["name"]: f["enabled"] for f in response.get_json()["flags"]}
    assert flags["new_checkout"] is False

    hit, _ = _identify(client, key, {"email": "a" * 1990 + "x"})
    assert {f["feature"]["name"]: f["enabled"] for f in hit.get_json()["flags"]}[
        "new_checkout"] is True


def test_remote_and_local_agree_on_an_ordinary_pattern(client, platform, project, org_key):
    created = api(client, "POST", f"projects/{project.id}/segments/", key=org_key,
                  json={"name": "Staff", "rules": _regex_rules(r".*@example\.com$")})
    segment = db.session.get(Segment, created.get_json()["id"])
    set_override(platform.development, platform.checkout, segment, True)
    document = _document(client, platform.development)
    for email, member in (("ada@example.com", True), ("ada@example.org", False)):
        response, _ = _identify(client, platform.development.client_key, {"email": email})
        remote = {f["feature"]["name"]: f["enabled"] for f in response.get_json()["flags"]}
        assert remote["new_checkout"] is member
        assert _local(document, {"email": email}) is member


@pytest.mark.parametrize(("trait", "message"), [
    ({"trait_key": "k" * 201, "trait_value": "x"}, "trait_key of 1-200 characters"),
    ({"trait_key": "", "trait_value": "x"}, "trait_key of 1-200 characters"),
    ({"trait_key": "email", "trait_value": "a" * 2001}, "longer than 2000 characters"),
])
def test_trait_keys_and_values_are_bounded_with_a_clear_400(client, platform, trait, message):
    response = client.post("/api/v1/identities/", json={"identifier": "ada", "traits": [trait]},
                           headers={"X-Environment-Key": platform.development.client_key})
    assert response.status_code == 400
    assert message in response.get_json()["detail"]


def test_traits_at_the_bounds_are_taken(client, platform):
    response = client.post("/api/v1/identities/", json={"identifier": "ada", "traits": [
        {"trait_key": "k" * 200, "trait_value": "a" * 2000}]},
        headers={"X-Environment-Key": platform.development.client_key})
    assert response.status_code == 200
