"""Project settings (admins only) and the users page (site admins only)."""

import html
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from tests.platform.conftest import fresh
from webapp.extensions import db
from webapp.models import AuditEntry, Environment, Membership, User


def scalar(statement):
    fresh()
    return db.session.scalar(statement)


@pytest.mark.parametrize(("who", "status"), [("editor", 403), ("viewer", 403), ("admin", 200)])
def test_settings_are_for_admins(client, login, request, project, who, status):
    login(client, request.getfixturevalue(who))
    assert client.get(f"/projects/{project.id}/settings").status_code == status


def test_settings_show_keys_to_admins(client, hx, login, admin, project, staging):
    login(client, admin)
    page = client.get(f"/projects/{project.id}/settings").get_data(as_text=True)
    assert staging.client_key in page and staging.server_key in page
    login(hx, admin)
    response = hx.get(f"/projects/{project.id}/settings")
    assert "<html" not in response.get_data(as_text=True)
    assert "HX-Request" in response.headers["Vary"]


def test_editor_cannot_rotate_or_rename(client, login, editor, project, staging):
    login(client, editor)
    key = staging.server_key
    assert client.post(f"/projects/{project.id}/settings/environments/{staging.id}/rotate",
                       data={"kind": "server"}).status_code == 403
    assert client.post(f"/projects/{project.id}/settings/environments/{staging.id}",
                       data={"name": "X", "approvals": "1"}).status_code == 403
    assert scalar(select(Environment.server_key).where(Environment.id == staging.id)) == key


def test_rotate_server_key(hx, login, admin, project, staging):
    login(hx, admin)
    old = staging.server_key
    response = hx.post(f"/projects/{project.id}/settings/environments/{staging.id}/rotate",
                       data={"kind": "server"})
    assert response.status_code == 200
    new = scalar(select(Environment.server_key).where(Environment.id == staging.id))
    assert new != old and new.startswith("ser.") and new in response.get_data(as_text=True)
    entry = scalar(select(AuditEntry).where(AuditEntry.event_type == "ENVIRONMENT_KEY_ROTATED"))
    assert new not in repr((entry.message, entry.before, entry.after))


@pytest.mark.parametrize(("data", "field_id", "message"), [
    ({"name": "", "approvals": "0"}, "env-{id}-name-error", "A name is required."),
    ({"name": "Staging", "approvals": "-2"}, "env-{id}-approvals-error",
     "Enter a whole number from 0"),
    ({"name": "Production", "approvals": "0"}, "env-{id}-name-error", "already has an environment"),
])
def test_environment_form_422(hx, login, admin, project, staging, data, field_id, message):
    login(hx, admin)
    response = hx.post(f"/projects/{project.id}/settings/environments/{staging.id}", data=data)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert f'id="{field_id.format(id=staging.id)}"' in body and message in body
    assert scalar(select(Environment.name).where(Environment.id == staging.id)) == "Staging"


def test_environment_rename_and_approvals(client, login, admin, project, staging):
    login(client, admin)
    response = client.post(f"/projects/{project.id}/settings/environments/{staging.id}",
                           data={"name": "Pre-prod", "approvals": "2"})
    assert response.status_code == 303
    env = scalar(select(Environment).where(Environment.id == staging.id))
    assert (env.name, env.minimum_change_request_approvals) == ("Pre-prod", 2)


def test_add_environment(hx, login, admin, project, envs):
    login(hx, admin)
    response = hx.post(f"/projects/{project.id}/settings/environments", data={"name": "QA"})
    assert response.status_code == 200
    response = hx.post(f"/projects/{project.id}/settings/environments", data={"name": "QA"})
    assert response.status_code == 422
    assert "already has an environment" in response.get_data(as_text=True)


def test_environment_of_another_project_is_404(client, login, make, admin, project):
    other_env = make.environments(make.project("Other"))[0]
    login(client, admin)
    assert client.post(f"/projects/{project.id}/settings/environments/{other_env.id}/rotate",
                       data={"kind": "client"}).status_code == 404


def test_members_add_change_remove(hx, login, make, admin, project):
    person = make.user(email="lead@example.com")
    login(hx, admin)
    response = hx.post(f"/projects/{project.id}/settings/members",
                       data={"email": "lead@example.com", "role": "viewer"})
    assert response.status_code == 200 and "lead@example.com" in response.get_data(as_text=True)
    membership = scalar(select(Membership).where(Membership.user_id == person.id))
    assert membership.role == "viewer"
    member_url = f"/projects/{project.id}/settings/members/{membership.id}"
    assert hx.post(member_url, data={"role": "editor"}).status_code == 200
    assert scalar(select(Membership.role).where(Membership.id == membership.id)) == "editor"
    assert hx.post(f"{member_url}/remove").status_code == 200
    assert scalar(select(Membership.id).where(Membership.user_id == person.id)) is None


def test_member_errors(hx, login, admin, project):
    login(hx, admin)
    response = hx.post(f"/projects/{project.id}/settings/members",
                       data={"email": "ghost@example.com", "role": "viewer"})
    assert response.status_code == 422
    assert 'id="member-new-email-error"' in response.get_data(as_text=True)
    only = scalar(select(Membership).where(Membership.user_id == admin.id))
    response = hx.post(f"/projects/{project.id}/settings/members/{only.id}",
                       data={"role": "viewer"})
    assert response.status_code == 409 and "only admin" in response.get_data(as_text=True)
    assert scalar(select(Membership.role).where(Membership.id == only.id)) == "admin"


def test_users_page_is_for_site_admins(client, hx, login, make, admin):
    login(client, admin)
    assert client.get("/admin/users").status_code == 403
    response = client.post("/admin/users",
                           data={"email": "x@example.com", "password": "password123"})
    assert response.status_code == 403
    root = make.user(site_admin=True, email="root@example.com")
    login(client, root)
    assert "root@example.com" in client.get("/admin/users").get_data(as_text=True)
    login(hx, root)
    response = hx.post("/admin/users", data={"email": "New@Example.com", "name": "<b>New</b>",
                                             "password": "password123"})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "&lt;b&gt;New&lt;/b&gt;" in body and "<html" not in body
    assert scalar(select(User.id).where(User.email == "new@example.com")) is not None
    response = hx.post("/admin/users", data={"email": "new@example.com", "password": "short"})
    assert response.status_code == 422
    assert "A user with this email already exists." in response.get_data(as_text=True)


def test_a_new_user_is_added_to_projects_in_the_same_step(hx, client, login, make, project):
    other = make.project("Mobile")
    root = make.user(site_admin=True, email="root@example.com")
    login(hx, root)
    form = hx.get("/admin/users").get_data(as_text=True)
    assert f'name="role-{project.id}"' in form and f'name="role-{other.id}"' in form
    response = hx.post("/admin/users", data={
        "email": "pm@example.com", "password": "password123",
        f"role-{project.id}": "editor", f"role-{other.id}": ""})
    assert response.status_code == 200
    assert f"added to {project.name} as editor" in response.get_data(as_text=True)
    user_id = scalar(select(User.id).where(User.email == "pm@example.com"))
    roles = db.session.execute(select(Membership.project_id, Membership.role).where(
        Membership.user_id == user_id)).all()
    assert [tuple(r) for r in roles] == [(project.id, "editor")]
    events = db.session.scalars(select(AuditEntry.event_type).where(
        AuditEntry.object_label == "pm@example.com").order_by(AuditEntry.id)).all()
    assert events == ["USER_CREATED", "MEMBER_ROLE_SET"]


@pytest.mark.parametrize("roles", [{"role-999999": "editor"}, {"role-{project}": "owner"}])
def test_a_bad_project_role_creates_nobody(hx, login, make, project, roles):
    root = make.user(site_admin=True, email="root@example.com")
    login(hx, root)
    data = {key.format(project=project.id): value for key, value in roles.items()}
    response = hx.post("/admin/users", data={"email": "pm@example.com",
                                             "password": "password123", **data})
    assert response.status_code == 422
    assert 'id="project-roles-error"' in response.get_data(as_text=True)
    assert scalar(select(User.id).where(User.email == "pm@example.com")) is None


def test_the_members_form_links_site_admins_to_a_filled_in_new_user(hx, client, login, make,
                                                                    admin, project):
    login(hx, admin)  # a project admin who is not a site admin is told who creates accounts
    response = hx.post(f"/projects/{project.id}/settings/members",
                       data={"email": "ghost@example.com", "role": "viewer"})
    assert "A site administrator creates the account" in response.get_data(as_text=True)
    root = make.user(site_admin=True, email="root@example.com", project=project, role="admin")
    login(hx, root)
    body = hx.post(f"/projects/{project.id}/settings/members",
                   data={"email": "ghost@example.com", "role": "viewer"}).get_data(as_text=True)
    start = body.index('href="/admin/users?') + len('href="')
    link = html.unescape(body[start:body.index('"', start)])
    assert link.endswith("#new-user")
    assert parse_qs(urlsplit(link).query) == {"email": ["ghost@example.com"],
                                              "project": [str(project.id)], "role": ["viewer"]}
    login(client, root)
    page = client.get(link).get_data(as_text=True)
    assert 'value="ghost@example.com"' in page
    assert '<option value="viewer" selected>' in page.split(f'id="role-{project.id}"')[1]
