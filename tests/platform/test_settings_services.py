"""Environments (rename, approvals, keys) and members (add, role, remove, last admin)."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import AuditEntry, Membership
from webapp.services.actors import SYSTEM
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.platform import environments, members, projects


@pytest.mark.parametrize(("name", "approvals", "field", "message"), [
    ("", "0", "name", "A name is required."),
    ("x" * 256, "0", "name", "At most 255 characters."),
    ("Production", "0", "name", "This project already has an environment with this name."),
    ("Staging", "-1", "approvals", "Enter a whole number from 0 (changes apply at once) to 20."),
    ("Staging", "two", "approvals", "Enter a whole number from 0 (changes apply at once) to 20."),
    ("Staging", "1.5", "approvals", "Enter a whole number from 0 (changes apply at once) to 20."),
    ("Staging", "21", "approvals", "Enter a whole number from 0 (changes apply at once) to 20."),
])
def test_update_environment_refuses_bad_input(staging, name, approvals, field, message):
    with pytest.raises(Invalid) as caught:
        environments.update_environment(staging, SYSTEM, name=name, approvals=approvals)
    assert caught.value.field_errors[field] == [message]
    db.session.expire_all()
    assert (staging.name, staging.minimum_change_request_approvals) == ("Staging", 0)


def test_update_environment_renames_and_sets_approvals_audited(staging):
    environments.update_environment(staging, SYSTEM, name="Pre-prod", approvals=" 2 ")
    assert (staging.name, staging.minimum_change_request_approvals) == ("Pre-prod", 2)
    entry = db.session.scalar(
        select(AuditEntry).where(AuditEntry.event_type == "ENVIRONMENT_UPDATED"))
    assert entry.before == {"name": "Staging", "minimum_change_request_approvals": 0}
    assert entry.after == {"name": "Pre-prod", "minimum_change_request_approvals": 2}


def test_rotating_keys_never_writes_them_to_the_audit_log(staging):
    old_client, old_server = staging.client_key, staging.server_key
    new_server = environments.rotate_key(staging, "server", SYSTEM)
    new_client = environments.rotate_key(staging, "client", SYSTEM)
    assert new_server.startswith("ser.") and new_server != old_server
    assert new_client != old_client and not new_client.startswith("ser.")
    texts = [repr((e.message, e.before, e.after)) for e in db.session.scalars(select(AuditEntry))]
    for key in (old_client, old_server, new_client, new_server):
        assert not any(key in text for text in texts)
    with pytest.raises(Invalid):
        environments.rotate_key(staging, "master", SYSTEM)


def test_environment_of_another_project_is_not_found(make, project):
    other = make.environments(make.project("Other"))[0]
    with pytest.raises(NotFound):
        environments.get_environment(project.id, other.id)


def test_add_environment_appends_it_with_every_flag(project, flag, envs):
    env = projects.add_environment(project, "QA", SYSTEM)
    assert [e.name for e in projects.environments_of(project.id)][-1] == "QA"
    assert env.server_key.startswith("ser.")


@pytest.mark.parametrize(("email", "role", "field", "message"), [
    ("", "editor", "email", "Enter the email of an existing user."),
    ("nobody@example.com", "editor", "email",
     "No user has this email. A site admin creates accounts."),
    ("editor@example.com", "viewer", "email",
     "editor@example.com is already a member; change their role below."),
    ("new@example.com", "owner", "role", "Choose admin, editor or viewer."),
])
def test_add_member_refuses_bad_input(make, project, editor, email, role, field, message):
    make.user(email="new@example.com")
    with pytest.raises(Invalid) as caught:
        members.add_member_by_email(project, email, role, SYSTEM)
    assert caught.value.field_errors[field] == [message]


def test_members_added_changed_removed_audited(make, project, admin):
    person = make.user(email="Person@Example.com")
    membership = members.add_member_by_email(project, "person@example.COM", "viewer", SYSTEM)
    members.change_role(membership, "editor", SYSTEM)
    members.remove_member(membership, SYSTEM)
    assert db.session.scalar(select(Membership.id).where(Membership.user_id == person.id)) is None
    events = db.session.scalars(select(AuditEntry.event_type).where(
        AuditEntry.object_label == "person@example.com").order_by(AuditEntry.id)).all()
    assert events[-3:] == ["MEMBER_ROLE_SET", "MEMBER_ROLE_SET", "MEMBER_REMOVED"]


def test_the_last_admin_stays(project, admin, make):
    only = db.session.scalar(select(Membership).where(Membership.user_id == admin.id))
    with pytest.raises(Conflict, match="only admin"):
        members.change_role(only, "viewer", SYSTEM)
    with pytest.raises(Conflict, match="only admin"):
        members.remove_member(only, SYSTEM)
    second = make.user(project=project, role="admin")
    members.remove_member(only, SYSTEM)
    assert [m.user_id for m in members.list_members(project.id)] == [second.id]
