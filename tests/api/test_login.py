"""`POST /api/v1/auth/login/`: email and password give a personal token (Flagsmith's path)."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ApiKey
from webapp.services.platform import users

from .conftest import api


def _login(client, payload):
    return client.post("/api/v1/auth/login/", json=payload)


def test_login_gives_a_token_that_acts_as_the_person(client, make, project):
    person = make.user(project=project, role="viewer", email="ada@example.com")
    response = _login(client, {"email": "ada@example.com", "password": "password123"})
    assert response.status_code == 200
    token = response.get_json()["key"]
    listed = api(client, "GET", "projects/", token=token).get_json()["results"]
    assert [p["id"] for p in listed] == [project.id]
    # Listed (and revocable) on the person's profile page like any token.
    (row,) = db.session.scalars(select(ApiKey).where(ApiKey.user_id == person.id)).all()
    assert row.kind == "user" and row.name == "API login"
    # Each login is a token of its own; the first still works.
    second = _login(client, {"email": "ada@example.com", "password": "password123"})
    assert second.get_json()["key"] != token
    assert api(client, "GET", "projects/", token=token).status_code == 200


@pytest.mark.parametrize("payload", [
    {"email": "ada@example.com", "password": "wrong"},
    {"email": "nobody@example.com", "password": "password123"},
])
def test_wrong_credentials_are_400_and_give_nothing(client, make, payload):
    make.user(email="ada@example.com")
    response = _login(client, payload)
    assert response.status_code == 400
    assert response.get_json()["non_field_errors"] == [
        "Unable to log in with provided credentials."]
    assert db.session.scalars(select(ApiKey)).all() == []


def test_a_deactivated_person_cannot_log_in(client, make):
    person = make.user(email="ada@example.com")
    person.is_active_user = False
    db.session.commit()
    assert users.authenticate("ada@example.com", "password123") is None
    assert _login(client, {"email": "ada@example.com", "password": "password123"}) \
        .status_code == 400


@pytest.mark.parametrize("payload, field", [
    ({}, "email"), ({"email": "ada@example.com"}, "password"),
    ({"email": "ada@example.com", "password": 5}, "password"), (None, "detail"),
])
def test_bad_input_is_4xx(client, payload, field):
    response = _login(client, payload)
    assert response.status_code in (400, 422) and response.get_json()[field]
