"""Sessions end when they should, and every answer carries the security headers."""

import re
from pathlib import Path

import pytest

from tests.api.conftest import api, token_for
from tests.conftest import CsrfClient
from webapp import create_app
from webapp.extensions import db
from webapp.models import AuditEntry, User
from webapp.services.actors import Actor
from webapp.services.errors import Invalid
from webapp.services.platform import users


def _sign_in(client, email="editor@example.com", password="password123"):
    response = client.post("/login", data={"email": email, "password": password})
    assert response.status_code == 303
    return client.get_cookie("session").value


def _with_cookie(app, cookie):
    """A fresh browser that only has the captured session cookie."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other


def test_a_cookie_captured_before_sign_out_no_longer_opens_the_dashboard(app, client, editor):
    captured = _sign_in(client)
    assert _with_cookie(app, captured).get("/").status_code == 200
    assert client.post("/logout").status_code == 303
    replay = _with_cookie(app, captured).get("/")
    assert replay.status_code == 302 and "/login" in replay.headers["Location"]


def test_signing_out_ends_the_other_browsers_sessions_too(app, client, editor):
    laptop = _sign_in(client)
    phone = app.test_client()
    _sign_in(phone)
    phone.post("/logout")
    assert _with_cookie(app, laptop).get("/").status_code == 302
    # Signing in again works and opens a new session.
    _sign_in(client)
    assert client.get("/").status_code == 200


def test_a_password_change_ends_sessions_and_only_the_new_password_signs_in(app, client, editor):
    captured = _sign_in(client)
    users.change_password(editor, "a-new-password", Actor.for_user(editor))
    assert _with_cookie(app, captured).get("/").status_code == 302
    refused = app.test_client().post("/login", data={"email": "editor@example.com",
                                                     "password": "password123"})
    assert refused.status_code == 422
    _sign_in(app.test_client(), password="a-new-password")
    entry = db.session.query(AuditEntry).filter_by(event_type="USER_PASSWORD_CHANGED").one()
    assert "a-new-password" not in str(entry.after) + str(entry.before) + entry.message


def test_a_password_change_refuses_a_short_password(editor):
    epoch = editor.session_epoch
    with pytest.raises(Invalid):
        users.change_password(editor, "short", Actor.for_user(editor))
    db.session.rollback()
    assert db.session.get(User, editor.id).session_epoch == epoch


def test_an_admin_removing_a_user_ends_their_sessions_and_tokens(app, client, make, editor,
                                                                 login):
    captured = _sign_in(client)
    token = token_for(editor)
    assert api(client, "GET", "projects/", token=token).status_code == 200
    admin = login(app.test_client(), make.user(site_admin=True, email="root@example.com"))
    page = admin.get("/admin/users")
    assert b"Remove editor@example.com" in page.data
    assert admin.post(f"/admin/users/{editor.id}/remove").status_code == 303
    assert _with_cookie(app, captured).get("/").status_code == 302
    assert api(app.test_client(), "GET", "projects/", token=token).status_code == 401
    refused = app.test_client().post("/login", data={"email": "editor@example.com",
                                                     "password": "password123"})
    assert refused.status_code == 422
    assert db.session.query(AuditEntry).filter_by(event_type="USER_REMOVED").count() == 1


def test_only_site_admins_remove_users_and_not_themselves(app, make, editor, login):
    other = make.user(email="other@example.com")
    assert login(app.test_client(), editor).post(
        f"/admin/users/{other.id}/remove").status_code == 403
    root = make.user(site_admin=True, email="root@example.com")
    admin = login(app.test_client(), root)
    assert admin.post(f"/admin/users/{root.id}/remove").status_code == 409
    assert admin.post("/admin/users/99999/remove").status_code == 404
    db.session.expire_all()
    assert db.session.get(User, other.id).is_active_user
    assert db.session.get(User, root.id).is_active_user


@pytest.mark.parametrize("session_id", ["1", "1:", ":0", "x:0", "1:x", "99999999999:0", "1:²"])
def test_a_malformed_or_stale_session_id_is_anonymous(app, editor, session_id):
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = session_id.replace("1", str(editor.id), 1)
    assert client.get("/").status_code == 302


# --- Headers -------------------------------------------------------------------------------------

PAGES = ["/login", "/", "/api/v1/docs/", "/admin/users", "/no-such-page", "/api/v1/projects/"]


@pytest.mark.parametrize("path", PAGES)
def test_every_answer_carries_the_security_headers(client, editor, login, path):
    response = login(client, editor).get(path)
    policy = response.headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval'
    assert directives["frame-ancestors"] == "'none'"
    assert directives["object-src"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


def test_no_template_carries_inline_script():
    for template in Path("templates").rglob("*.html"):
        text = template.read_text()
        for script in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in script, f"{template}: inline <script>"
        assert not re.search(r"\s(on[a-z]+|hx-on[:\w-]*)=", text), f"{template}: inline handler"
        assert "javascript:" not in text, template


def test_cookies_are_secure_over_https_behind_the_proxy(app_config, editor):
    app = create_app({**app_config, "PROXY_FIX_HOPS": 1})
    app.test_client_class = CsrfClient
    client = app.test_client()
    plain = client.post("/login", data={"email": "editor@example.com",
                                        "password": "password123"})
    assert "Secure" not in plain.headers["Set-Cookie"]
    proxied = app.test_client().post(
        "/login", data={"email": "editor@example.com", "password": "password123"},
        headers={"X-Forwarded-Proto": "https", "Referer": "https://localhost/login"})
    cookie = proxied.headers["Set-Cookie"]
    with app.app_context():
        db.engine.dispose()
    assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
