"""Admin API for webhooks: project admins list, create, update and delete them; the same URL
rules as the settings page; documented in the OpenAPI document."""

import pytest
from sqlalchemy import func, select

from tests.api.conftest import api, foreign_org_key, org_key, token_for  # noqa: F401
from tests.integrations.test_views import PUBLIC, REFUSED
from webapp.extensions import db
from webapp.models import Webhook

PATH = "projects/{}/webhooks/"


@pytest.fixture
def strict(app):
    app.config["WEBHOOKS_ALLOW_PRIVATE"] = False
    return app


def count() -> int:
    return db.session.scalar(select(func.count()).select_from(Webhook))


def test_crud(client, project, org_key, strict):  # noqa: F811
    path = PATH.format(project.id)
    created = api(client, "POST", path, key=org_key, json={
        "url": PUBLIC, "events": ["FLAG_UPDATED", "pipeline.flag_launched"]})
    assert created.status_code == 201
    hook = created.get_json()
    assert hook["url"] == PUBLIC and hook["enabled"] is True and len(hook["secret"]) >= 24
    listed = api(client, "GET", path, key=org_key).get_json()
    assert listed["count"] == 1 and listed["results"][0]["id"] == hook["id"]
    one = f"{path}{hook['id']}/"
    changed = api(client, "PATCH", one, key=org_key, json={"enabled": False, "secret": "new"})
    assert changed.status_code == 200
    assert (changed.get_json()["enabled"], changed.get_json()["secret"]) == (False, "new")
    assert changed.get_json()["events"] == ["FLAG_UPDATED", "pipeline.flag_launched"]
    assert api(client, "GET", one, key=org_key).get_json()["enabled"] is False
    assert api(client, "DELETE", one, key=org_key).status_code == 204
    assert api(client, "GET", one, key=org_key).status_code == 404
    assert count() == 0


@pytest.mark.parametrize("url, message", REFUSED)
def test_api_refuses_unsafe_urls(client, project, org_key, strict, url, message):  # noqa: F811
    response = api(client, "POST", PATH.format(project.id), key=org_key,
                   json={"url": url, "events": ["FLAG_UPDATED"]})
    assert response.status_code == 422
    assert message in " ".join(response.get_json()["url"])
    assert count() == 0


def test_patch_refuses_an_unsafe_url_and_changes_nothing(client, project, org_key, strict):  # noqa: F811
    hook = api(client, "POST", PATH.format(project.id), key=org_key,
               json={"url": PUBLIC, "events": ["FLAG_UPDATED"]}).get_json()
    response = api(client, "PATCH", f"{PATH.format(project.id)}{hook['id']}/", key=org_key,
                   json={"url": "http://169.254.169.254/", "events": ["change_request.opened"]})
    assert response.status_code == 422
    assert db.session.get(Webhook, hook["id"]).url == PUBLIC
    assert db.session.get(Webhook, hook["id"]).events == ["FLAG_UPDATED"]


@pytest.mark.parametrize("payload, field", [
    ({"events": ["FLAG_UPDATED"]}, "url"),
    ({"url": PUBLIC}, "events"),
    ({"url": PUBLIC, "events": []}, "events"),
    ({"url": PUBLIC, "events": ["NOPE"]}, "events"),
    ({"url": PUBLIC, "events": ["FLAG_UPDATED"], "secret": "x" * 256}, "secret"),
    ({"url": PUBLIC, "events": ["FLAG_UPDATED"], "enabled": "maybe"}, "enabled"),
])
def test_api_field_errors(client, project, org_key, payload, field):  # noqa: F811
    response = api(client, "POST", PATH.format(project.id), key=org_key, json=payload)
    assert response.status_code == 422 and field in response.get_json()
    assert count() == 0


def test_only_project_admins(client, make, project, editor, foreign_org_key):  # noqa: F811
    assert api(client, "GET", PATH.format(project.id), token=token_for(editor)).status_code == 403
    assert api(client, "POST", PATH.format(project.id), token=token_for(editor),
               json={"url": PUBLIC, "events": ["FLAG_UPDATED"]}).status_code == 403
    assert api(client, "GET", PATH.format(project.id), key=foreign_org_key).status_code == 404
    admin = make.user(project=project, role="admin")
    assert api(client, "GET", PATH.format(project.id), token=token_for(admin)).status_code == 200


def test_documented_in_openapi(client):
    document = client.get("/api/v1/openapi.json").get_json()
    paths = document["paths"]
    assert set(paths["/api/v1/projects/{project_id}/webhooks/"]) == {"get", "post"}
    assert set(paths["/api/v1/projects/{project_id}/webhooks/{webhook_id}/"]) == {
        "get", "patch", "delete"}
