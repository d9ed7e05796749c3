"""Input that used to answer 500 gets a clear 400/422 on every path, and nothing is written."""

import pytest
from sqlalchemy import func, select

from tests.api.conftest import api
from webapp.extensions import db
from webapp.models import Feature, ReleasePipeline, Segment


def _nested(depth):
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [900, 100_000])
def test_deeply_nested_json_is_a_clear_400(client, project, platform, org_key, depth):
    for path, headers in (
            (f"/api/v1/projects/{project.id}/features/", {"Authorization": f"Api-Key {org_key}"}),
            ("/api/v1/identities/", {"X-Environment-Key": platform.development.client_key})):
        response = client.post(path, data=_nested(depth), content_type="application/json",
                               headers=headers)
        assert response.status_code == 400
        assert "nests deeper than 512 levels" in response.get_json()["detail"]


def _deep_rules(depth):
    rule = {"type": "ALL", "rules": [],
            "conditions": [{"property": "plan", "operator": "EQUAL", "value": "pro"}]}
    for _ in range(depth - 1):
        rule = {"type": "ANY", "conditions": [], "rules": [rule]}
    return [rule]


def test_segment_rules_nested_200_deep_are_a_422(client, project, org_key):
    response = api(client, "POST", f"projects/{project.id}/segments/", key=org_key,
                   json={"name": "Deep", "rules": _deep_rules(200)})
    assert response.status_code == 422
    assert response.get_json()["r0.r0.r0.r0.r0"] == ["Rules nest at most 4 levels deep."]
    assert db.session.scalar(select(func.count(Segment.id)).where(Segment.name == "Deep")) == 0


@pytest.mark.parametrize(("path", "body", "model"), [
    ("projects/{project}/features/", {"name": "a\ud800b"}, Feature),
    ("projects/{project}/segments/", {"name": "\ud800", "rules": _deep_rules(1)}, Segment),
    ("projects/{project}/release-pipelines/", {"name": "x\udfff", "stages": []}, ReleasePipeline),
])
def test_a_lone_surrogate_in_a_name_is_a_clear_400(client, project, org_key, path, body, model):
    response = api(client, "POST", path.format(project=project.id), key=org_key, json=body)
    assert response.status_code == 400
    assert "lone surrogates" in response.get_json()["detail"]
    assert db.session.scalar(select(func.count(model.id)).where(
        model.project_id == project.id)) == 0


@pytest.mark.parametrize("body", [
    {"identifier": "\ud800"},
    {"identifier": "ada", "traits": [{"trait_key": "\udc00", "trait_value": "x"}]},
    {"identifier": "ada", "traits": [{"trait_key": "email", "trait_value": "a\ud800"}]},
])
def test_a_lone_surrogate_in_an_identity_is_a_clear_400(client, platform, body):
    response = client.post("/api/v1/identities/", json=body,
                           headers={"X-Environment-Key": platform.development.client_key})
    assert response.status_code == 400
    assert "lone surrogates" in response.get_json()["detail"]


def test_characters_beyond_the_bmp_are_text_not_surrogates(client, project, org_key):
    response = api(client, "POST", f"projects/{project.id}/features/", key=org_key,
                   json={"name": "rocket_\U0001f680"})
    assert response.status_code == 201
    assert response.get_json()["name"] == "rocket_\U0001f680"


@pytest.mark.parametrize("path", ["projects/99999999999999999999/features/",
                                  "projects/{project}/features/9223372036854775808/"])
def test_ids_too_large_for_a_column_are_404(client, project, org_key, path):
    response = api(client, "GET", path.format(project=project.id), key=org_key)
    assert response.status_code == 404
