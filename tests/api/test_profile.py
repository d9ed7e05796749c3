"""The profile page: personal tokens created (shown once), used, revoked."""

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ApiKey, AuditEntry


def test_profile_needs_sign_in(client):
    assert client.get("/profile").status_code == 302


def test_create_use_and_revoke_a_token(client, login, editor, project):
    login(client, editor)
    page = client.get("/profile")
    assert page.status_code == 200 and "No tokens yet" in page.get_data(as_text=True)
    created = client.post("/profile/tokens", data={"name": "deploy script"})
    html = created.get_data(as_text=True)
    assert created.status_code == 200 and "shown only once" in html
    db.session.rollback()
    row = db.session.scalar(select(ApiKey).where(ApiKey.user_id == editor.id))
    secret = html.split('aria-label="New token">')[1].split("<")[0]
    assert row.key_hash != secret and secret.startswith(row.prefix)
    assert "shown only once" not in client.get("/profile").get_data(as_text=True)
    api = client.get("/api/v1/projects/", headers={"Authorization": f"Token {secret}"})
    assert [p["name"] for p in api.get_json()["results"]] == ["Acme"]
    revoked = client.post(f"/profile/tokens/{row.id}/revoke", headers={"HX-Request": "true"})
    assert revoked.status_code == 200 and "Revoked" in revoked.get_data(as_text=True)
    assert "<html" not in revoked.get_data(as_text=True)
    assert client.get("/api/v1/projects/",
                      headers={"Authorization": f"Token {secret}"}).status_code == 401
    db.session.rollback()
    events = db.session.scalars(select(AuditEntry.event_type).where(
        AuditEntry.object_type == "api_key").order_by(AuditEntry.id)).all()
    assert events == ["API_KEY_CREATED", "API_KEY_REVOKED"]


def test_bad_name_is_422_and_csrf_is_required(client, login, editor):
    login(client, editor)
    assert client.post("/profile/tokens", data={"name": ""}).status_code == 422
    assert client.post("/profile/tokens", data={"name": "x"}, csrf=False).status_code == 400


def test_cannot_revoke_someone_elses_token(client, login, editor, viewer):
    from webapp.services.actors import SYSTEM
    from webapp.services.platform import api_keys

    row, _secret = api_keys.create_user_token(viewer, "theirs", SYSTEM)
    login(client, editor)
    assert client.post(f"/profile/tokens/{row.id}/revoke").status_code == 404
