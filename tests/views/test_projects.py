def test_user_sees_only_their_projects(client, login, make, editor, project):
    other = make.project("Secret Other")
    login(client, editor)
    page = client.get("/").data
    assert b"Acme" in page
    assert b"Secret Other" not in page
    assert client.get(f"/projects/{other.id}").status_code == 404
    assert client.get(f"/projects/{project.id}").status_code in (200, 302)


def test_only_site_admins_create_projects(client, login, make, editor):
    login(client, editor)
    assert client.post("/projects", data={"name": "Nope"}).status_code == 403
    admin = make.user(site_admin=True)
    login(client, admin)
    response = client.post("/projects", data={"name": "New <b>one</b>"})
    assert response.status_code == 303
    page = client.get("/").data
    assert b"New &lt;b&gt;one&lt;/b&gt;" in page


def test_project_name_is_required(hx, login, make):
    login(hx, make.user(site_admin=True))
    response = hx.post("/projects", data={"name": ""})
    assert response.status_code == 422
    assert b"This field is required." in response.data
    assert b"<html" not in response.data
    assert "HX-Request" in response.headers["Vary"]
