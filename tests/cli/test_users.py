"""`flask users set-password`: the way back in when the printed admin password is lost."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry
from webapp.services.platform import users


def test_sets_a_new_password_given_on_the_command_line_and_ends_the_sessions(app, make):
    user = make.user(email="admin@example.com", password="old-password")
    epoch = user.session_epoch
    result = app.test_cli_runner().invoke(
        args=["users", "set-password", "--email", "Admin@Example.com", "--password",
              "new-password"])
    assert result.exit_code == 0, result.output
    assert "Password of admin@example.com set." in result.output
    assert users.authenticate("admin@example.com", "new-password") is not None
    assert users.authenticate("admin@example.com", "old-password") is None
    entry = db.session.scalar(
        select(AuditEntry).where(AuditEntry.event_type == "USER_PASSWORD_CHANGED"))
    assert entry.object_label == "admin@example.com"
    db.session.refresh(user)
    assert user.session_epoch == epoch + 1  # a cookie from before no longer signs anyone in
    assert "new-password" not in repr((entry.before, entry.after, entry.message))


def test_prompts_twice_for_the_password_when_not_given(app, make):
    make.user(email="admin@example.com", password="old-password")
    result = app.test_cli_runner().invoke(
        args=["users", "set-password", "--email", "admin@example.com"],
        input="typed-password\ntyped-password\n")
    assert result.exit_code == 0, result.output
    assert "typed-password" not in result.output
    assert users.authenticate("admin@example.com", "typed-password") is not None


@pytest.mark.parametrize(("email", "password", "message"), [
    ("nobody@example.com", "long-enough", "No user has the email nobody@example.com."),
    ("admin@example.com", "short", "At least 8 characters."),
])
def test_refuses_an_unknown_email_or_a_short_password(app, make, email, password, message):
    make.user(email="admin@example.com", password="old-password")
    result = app.test_cli_runner().invoke(
        args=["users", "set-password", "--email", email, "--password", password])
    assert result.exit_code == 1
    assert f"Error: {message}" in result.output
    assert users.authenticate("admin@example.com", "old-password") is not None
