"""Who reaches the release-pipeline API: viewers read and change nothing (403); another
organisation's key, a user who is not a member, or a pipeline of another project: 404 for
every endpoint."""

from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import AuditEntry

from .release_pipeline_support import call, pipelines_path, published, token_for, two_stages


@dataclass
class Scene:
    project: object
    pipeline: dict
    feature_id: int
    body: dict


@pytest.fixture
def scene(client, project, platform, org_key):
    """A published pipeline with a flag in it."""
    pipeline = published(client, project, org_key, two_stages(platform))
    added = call(client, "POST", pipelines_path(project, pipeline["id"], "add-feature/"),
                 key=org_key, json={"feature_id": platform.checkout.id})
    assert added.status_code == 200
    return Scene(project, pipeline, platform.checkout.id, two_stages(platform))


def _endpoints(scene, project=None):
    """(method, path, body, writes) for every operation, aimed at the scene's pipeline."""
    project = project or scene.project
    one = pipelines_path(project, scene.pipeline["id"])
    flag = {"feature_id": scene.feature_id}
    return [
        ("GET", pipelines_path(project), None, False),
        ("POST", pipelines_path(project), scene.body, True),
        ("GET", one, None, False),
        ("PUT", one, scene.body, True),
        ("PATCH", one, {"name": "Renamed"}, True),
        ("DELETE", one, None, True),
        ("POST", f"{one}publish-pipeline/", {}, True),
        ("POST", f"{one}unpublish-pipeline/", None, True),
        ("POST", f"{one}clone/", {"name": "Copy"}, True),
        *[("POST", f"{one}{what}-feature/", flag, True)
          for what in ("add", "remove", "pause", "resume", "advance", "rollback")],
        ("POST", f"{one}add-features/", {"feature_ids": [scene.feature_id]}, True),
    ]


def _audit_count():
    return db.session.scalar(select(func.count()).select_from(AuditEntry))


def test_every_pipeline_route_is_in_the_matrix(app, scene):
    routes = {(method, rule.rule) for rule in app.url_map.iter_rules()
              if "release-pipelines" in rule.rule
              for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert len(routes) == len(_endpoints(scene))


def test_viewers_read_and_change_nothing(client, scene, viewer):
    token = token_for(viewer)
    before = _audit_count()
    for method, path, body, writes in _endpoints(scene):
        response = call(client, method, path, token=token, json=body)
        expected = 403 if writes else 200
        assert response.status_code == expected, (method, path)
        if writes:
            assert "editor role" in response.get_json()["detail"]
    assert _audit_count() == before


def test_editors_tokens_write(client, scene, editor):
    response = call(client, "POST", pipelines_path(scene.project, scene.pipeline["id"],
                                                   "pause-feature/"),
                    token=token_for(editor), json={"feature_id": scene.feature_id})
    assert response.status_code == 200 and response.get_json()["status"] == "paused"


@pytest.mark.parametrize("who", ["other organisation's key", "non-member's token"])
def test_out_of_reach_is_404_everywhere(client, make, scene, foreign_org_key, who):
    credentials = ({"key": foreign_org_key} if who.startswith("other")
                   else {"token": token_for(make.user(project=make.project("Theirs")))})
    before = _audit_count()
    for method, path, body, _writes in _endpoints(scene):
        response = call(client, method, path, json=body, **credentials)
        assert response.status_code == 404, (method, path)
        assert response.get_json() == {"detail": "Not found."}
    assert _audit_count() == before


def test_a_pipeline_under_another_project_is_404(client, make, scene, org_key):
    sibling = make.project("Sibling")  # same organisation: the key reaches it
    assert call(client, "GET", pipelines_path(sibling), key=org_key).status_code == 200
    before = _audit_count()
    for method, path, body, _writes in _endpoints(scene, project=sibling):
        if path == pipelines_path(sibling):
            continue  # the sibling's own list and create
        response = call(client, method, path, key=org_key, json=body)
        assert response.status_code == 404, (method, path)
    assert _audit_count() == before
