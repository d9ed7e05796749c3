"""The layout every page shares: the project menu shows only what the member's role may open,
a refusal keeps the project's navigation and says what is needed, and every page has an icon."""


def test_a_viewer_sees_no_settings_link_and_an_admin_does(client, login, project, viewer, admin):
    settings = f'href="/projects/{project.id}/settings"'
    login(client, viewer)
    page = client.get(f"/projects/{project.id}/flags").text
    assert f'href="/projects/{project.id}/pipelines"' in page and settings not in page
    login(client, admin)
    assert settings in client.get(f"/projects/{project.id}/flags").text


def test_a_refusal_keeps_the_project_navigation_and_says_what_is_needed(client, login, project,
                                                                         viewer):
    login(client, viewer)
    response = client.get(f"/projects/{project.id}/settings")
    assert response.status_code == 403
    page = response.text
    assert '<nav class="project-nav" aria-label="Project">' in page
    assert f'href="/projects/{project.id}/flags"' in page
    assert "This needs the admin role in Acme." in page
    assert "You are a viewer in Acme; this page is for admins." in page
    assert f'href="/projects/{project.id}/settings"' not in page


def test_the_project_menu_is_a_details_element_naming_where_you_are(client, login, project,
                                                                    viewer):
    login(client, viewer)
    page = client.get(f"/projects/{project.id}/pipelines").text
    assert '<details class="nav-menu">' in page
    assert '<span class="nav-here">Pipelines</span>' in page
    assert page.count('aria-current="page"') == 1


def test_every_page_links_an_icon_that_is_served(client, login, project, viewer):
    assert 'rel="icon" href="/static/favicon.svg"' in client.get("/login").text
    login(client, viewer)
    page = client.get(f"/projects/{project.id}/flags").text
    assert 'rel="icon" href="/static/favicon.svg"' in page
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.mimetype == "image/svg+xml"
