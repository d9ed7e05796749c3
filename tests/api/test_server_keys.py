"""Server-side keys through the admin API (Flagsmith's environments/<api_key>/api-keys/)."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry, ServerKey

from .conftest import api, token_for


def _sdk_document(client, key):
    return client.get("/api/v1/environment-document/", headers={"X-Environment-Key": key})


def test_create_list_use_and_delete(client, platform, org_key):
    env = platform.production.client_key
    path = f"environments/{env}/api-keys/"
    created = api(client, "POST", path, key=org_key, json={"name": "deploy"})
    assert created.status_code == 201
    made = created.get_json()
    assert made["key"].startswith("ser.") and made["name"] == "deploy" and made["active"]
    # The key opens the environment document (local evaluation) at once.
    document = _sdk_document(client, made["key"])
    assert document.status_code == 200 and document.get_json()["api_key"] == env
    # Listed without the secret; the environment's own server key still works beside it.
    listed = api(client, "GET", path, key=org_key).get_json()
    assert [(k["id"], k["name"], k["prefix"]) for k in listed] == [
        (made["id"], "deploy", made["key"][:8])]
    assert "key" not in listed[0]
    assert db.session.scalar(select(ServerKey.key_hash)) != made["key"]  # stored hashed
    assert _sdk_document(client, platform.production.server_key).status_code == 200
    # Deleted: refused on the next request.
    assert api(client, "DELETE", f"{path}{made['id']}/", key=org_key).status_code == 204
    assert _sdk_document(client, made["key"]).status_code == 401
    assert api(client, "GET", path, key=org_key).get_json() == []
    events = db.session.scalars(select(AuditEntry.event_type)
                                .where(AuditEntry.object_type == "server_key")
                                .order_by(AuditEntry.id)).all()
    assert events == ["SERVER_KEY_CREATED", "SERVER_KEY_DELETED"]


def test_admins_only(client, platform, project, editor, viewer):
    path = f"environments/{platform.production.client_key}/api-keys/"
    for user in (editor, viewer):
        token = token_for(user)
        assert api(client, "GET", path, token=token).status_code == 403
        assert api(client, "POST", path, token=token, json={"name": "x"}).status_code == 403
    assert db.session.scalars(select(ServerKey)).all() == []


@pytest.mark.parametrize("payload, field", [({}, "name"), ({"name": ""}, "name"),
                                            ({"name": "x" * 256}, "name")])
def test_bad_input_is_422_and_nothing_made(client, platform, org_key, payload, field):
    response = api(client, "POST", f"environments/{platform.production.client_key}/api-keys/",
                   key=org_key, json=payload)
    assert response.status_code == 422 and response.get_json()[field]
    assert db.session.scalars(select(ServerKey)).all() == []


def test_other_environments_and_organisations_see_nothing(client, platform, org_key,
                                                          foreign_org_key):
    prod = f"environments/{platform.production.client_key}/api-keys/"
    made = api(client, "POST", prod, key=org_key, json={"name": "deploy"}).get_json()
    dev = f"environments/{platform.development.client_key}/api-keys/"
    assert api(client, "DELETE", f"{dev}{made['id']}/", key=org_key).status_code == 404
    assert api(client, "GET", prod, key=foreign_org_key).status_code == 404
    assert api(client, "DELETE", f"{prod}{made['id']}/", key=foreign_org_key).status_code == 404
    assert api(client, "DELETE", f"{prod}999999/", key=org_key).status_code == 404
    assert len(api(client, "GET", prod, key=org_key).get_json()) == 1
