"""Guessing passwords and keys is throttled per account and per client address; an unknown
email costs what a wrong password costs; a Redis outage never stops anyone signing in."""

import sys
from datetime import UTC, datetime

import pytest
import werkzeug.security

from tests.api.conftest import api
from tests.conftest import CsrfClient
from webapp import create_app
from webapp.extensions import db
from webapp.models import User
from webapp.redis_conn import redis_url_of, start_embedded
from webapp.services.actors import SYSTEM
from webapp.services.platform import api_keys, users

START = datetime(2030, 1, 7, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def app_config(app_config):
    return {**app_config, "THROTTLE_SIGN_IN_PER_ACCOUNT": 3, "THROTTLE_SIGN_IN_PER_ADDRESS": 5,
            "THROTTLE_SIGN_IN_WINDOW": 60, "THROTTLE_API_AUTH_PER_ADDRESS": 4,
            "THROTTLE_API_AUTH_WINDOW": 120}


@pytest.fixture
def org_key(project):
    return api_keys.create_organisation_key(project.organisation, "CI", SYSTEM)[1]


@pytest.fixture
def clock(time_machine):
    time_machine.move_to(START, tick=False)
    return time_machine


def _sign_in(client, email, password, **kwargs):
    return client.post("/login", data={"email": email, "password": password}, **kwargs)


def test_wrong_passwords_lock_the_account_until_the_window_ends(app, client, editor, clock):
    for _ in range(3):
        assert _sign_in(client, "editor@example.com", "wrong-password").status_code == 422
    refused = _sign_in(client, "Editor@Example.com", "password123")  # the right one, too
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    assert b"Too many failed sign-ins. Try again in 1 minute." in refused.data
    assert client.get("/").status_code == 302
    clock.shift(59)
    assert _sign_in(client, "editor@example.com", "password123").headers["Retry-After"] == "1"
    clock.shift(1)
    assert _sign_in(client, "editor@example.com", "password123").status_code == 303
    assert client.get("/").status_code == 200


def test_another_account_from_the_same_address_is_not_locked_by_one(app, client, editor, make,
                                                                     clock):
    make.user(email="other@example.com")
    for _ in range(3):
        _sign_in(client, "editor@example.com", "wrong-password")
    assert _sign_in(client, "other@example.com", "password123").status_code == 303


def test_a_signed_in_account_starts_counting_again(app, client, editor, clock):
    for _ in range(2):
        _sign_in(client, "editor@example.com", "wrong-password")
    assert _sign_in(client, "editor@example.com", "password123").status_code == 303
    client.post("/logout")
    for _ in range(2):
        assert _sign_in(client, "editor@example.com", "wrong-password").status_code == 422
    assert _sign_in(client, "editor@example.com", "password123").status_code == 303


def test_one_address_guessing_many_accounts_is_throttled(app, client, editor, clock):
    for n in range(5):
        assert _sign_in(client, f"guess{n}@example.com", "password123").status_code == 422
    assert _sign_in(client, "editor@example.com", "password123").status_code == 429
    elsewhere = app.test_client()
    elsewhere.environ_base["REMOTE_ADDR"] = "10.0.0.2"
    assert _sign_in(elsewhere, "editor@example.com", "password123").status_code == 303


def test_the_throttled_form_is_swapped_in_with_its_message(app, hx, editor, clock):
    for _ in range(3):
        _sign_in(hx, "editor@example.com", "wrong-password")
    response = _sign_in(hx, "editor@example.com", "password123")
    assert response.status_code == 429 and b"<html" not in response.data
    assert b'id="login_form"' in response.data and b"Too many failed sign-ins" in response.data


def test_guessed_api_keys_are_throttled_per_address(app, client, project, org_key, clock):
    for n in range(4):
        assert api(client, "GET", "projects/", key=f"guess-{n}").status_code == 401
    refused = api(client, "GET", "projects/", key=org_key)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "120"
    assert "Too many failed authentications" in refused.get_json()["detail"]
    assert api(client, "GET", "projects/", token="guess").status_code == 429
    clock.shift(120)
    assert api(client, "GET", "projects/", key=org_key).status_code == 200


@pytest.fixture
def stopped_redis(tmp_path):
    (tmp_path / "stopped").mkdir()
    server = start_embedded(tmp_path / "stopped")
    url = redis_url_of(server)
    server.shutdown()
    return url


def test_sign_in_and_the_api_keep_working_while_redis_is_down(app_config, stopped_redis, editor,
                                                              org_key):
    down = create_app({**app_config, "REDIS_URL": stopped_redis})
    down.test_client_class = CsrfClient
    with down.app_context():
        client = down.test_client()
        assert _sign_in(client, "editor@example.com", "wrong-password").status_code == 422
        assert _sign_in(client, "editor@example.com", "password123").status_code == 303
        assert client.get("/").status_code == 200
        assert api(client, "GET", "projects/", key="guess").status_code == 401
        assert api(client, "GET", "projects/", key=org_key).status_code == 200
        db.session.remove()
        db.engine.dispose()


def _hashes_checked(run) -> list[str]:
    """The password hashes `run` checked a password against (watched with a profile hook)."""
    checked: list[str] = []
    target = werkzeug.security.check_password_hash.__code__

    def watch(frame, event, _arg):
        if event == "call" and frame.f_code is target:
            checked.append(frame.f_locals["pwhash"])

    sys.setprofile(watch)
    try:
        run()
    finally:
        sys.setprofile(None)
    return checked


def _method(pwhash: str) -> str:
    return pwhash.split("$", 1)[0]  # e.g. scrypt:32768:8:1 (the cost)


def test_an_unknown_email_costs_a_password_hash_like_a_wrong_password(app, editor, make):
    real = db.session.get(User, editor.id).password_hash
    wrong = _hashes_checked(lambda: users.authenticate("editor@example.com", "wrong-password"))
    unknown = _hashes_checked(lambda: users.authenticate("nobody@example.com", "wrong-password"))
    removed = make.user(email="gone@example.com")
    removed.is_active_user = False
    db.session.commit()
    inactive = _hashes_checked(lambda: users.authenticate("gone@example.com", "password123"))
    assert wrong == [real]
    assert len(unknown) == 1 and unknown[0] != real and _method(unknown[0]) == _method(real)
    assert len(inactive) == 1


def test_the_api_login_counts_against_the_same_account_as_the_form(app, client, editor, clock):
    def api_login(password):
        return client.post("/api/v1/auth/login/",
                           json={"email": "editor@example.com", "password": password})

    assert api_login("wrong-password").status_code == 400
    assert _sign_in(client, "editor@example.com", "wrong-password").status_code == 422
    assert api_login("wrong-password").status_code == 400
    refused = api_login("password123")  # the right password, after three failures
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert "Too many failed sign-ins" in refused.get_json()["detail"]
    assert _sign_in(client, "editor@example.com", "password123").status_code == 429
    clock.shift(60)
    assert "key" in api_login("password123").get_json()
