import pytest


def test_login_page_renders(client):
    response = client.get("/login")
    assert response.status_code == 200
    assert b"Sign in to Railyard" in response.data


def test_sign_in_and_out(client, editor, project):
    response = client.post("/login",
                           data={"email": "editor@example.com", "password": "password123"})
    assert response.status_code == 303
    assert client.get("/").status_code == 200
    assert b"Acme" in client.get("/").data
    assert client.post("/logout").status_code == 303
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("editor@example.com", "wrong-password", b"Wrong email or password."),
        ("nobody@example.com", "password123", b"Wrong email or password."),
        ("", "password123", b"This field is required."),
    ],
)
def test_bad_sign_in_is_refused_with_a_message(client, editor, email, password, message):
    response = client.post("/login", data={"email": email, "password": password})
    assert response.status_code == 422
    assert message in response.data
    assert client.get("/").status_code == 302


def test_login_without_csrf_is_refused(client, editor):
    response = client.post("/login",
                           data={"email": "editor@example.com", "password": "password123"},
                           csrf=False)
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_session_cookie_is_httponly_and_samesite(client, editor):
    response = client.post("/login",
                           data={"email": "editor@example.com", "password": "password123"})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie


def test_next_parameter_cannot_redirect_off_site(client, editor):
    response = client.post("/login?next=//evil.example/", data={"email": "editor@example.com",
                                                              "password": "password123"})
    assert response.headers["Location"] == "/"
