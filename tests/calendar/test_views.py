"""The release calendar's screens: a project's calendar (everyone reads, admins change),
the organisation's (site admins), the banner on project pages, holds on cards and run pages."""

from datetime import UTC, datetime
from html import unescape

import pytest
from sqlalchemy import func, select

from tests.calendar.conftest import MONDAY
from webapp.extensions import db
from webapp.models import DeploymentWindow, Freeze, LineStop, Notification
from webapp.services.actors import SYSTEM
from webapp.services.runs import calendar


def page_url(project):
    return f"/projects/{project.id}/settings/calendar"


def window_data(env, *, days=(0, 1, 2, 3), opens="09:00", closes="16:00",
                zone="Europe/Berlin"):
    prefix = f"env-{env.id}-"
    return {f"{prefix}weekdays": [str(d) for d in days], f"{prefix}opens": opens,
            f"{prefix}closes": closes, f"{prefix}timezone": zone}


def freeze_data(envs=(), *, starts="2030-01-07T00:00", ends="2030-01-10T00:00",
                zone="UTC", reason="Holiday freeze"):
    return {"freeze-starts": starts, "freeze-ends": ends, "freeze-timezone": zone,
            "freeze-reason": reason, "freeze-environments": [str(e.id) for e in envs]}


# --- the page -------------------------------------------------------------------------------------


def test_everyone_reads_the_calendar_and_only_admins_get_its_forms(
    monday, client, login, project, viewer, admin, envs
):
    calendar.set_windows(envs["Production"].id, "Europe/Berlin", [
        calendar.Window(d, 9 * 60, 16 * 60) for d in range(4)], SYSTEM)
    login(client, viewer)
    html = client.get(page_url(project)).text
    assert "Release calendar" in html
    assert "Open Monday–Thursday 09:00–16:00 (Europe/Berlin)." in html
    assert "Open now, until today 16:00 Europe/Berlin." in html  # 10:00 UTC is 11:00 in Berlin
    assert "No window: always open." in html
    assert "Save the window" not in html and "Stop the line</button>" not in html
    assert "Project admins change the calendar." in html
    login(client, admin)
    html = client.get(page_url(project)).text
    assert "Save the window" in html and "Plan the freeze" in html
    assert 'name="stop-reason"' in html and "Stop the line</button>" in html
    assert html.count('type="time"') == 2 * len(envs)
    assert 'type="datetime-local"' in html


def test_non_members_get_404_and_viewers_cannot_post(client, login, make, project, viewer, envs):
    stranger = make.user()
    login(client, stranger)
    assert client.get(page_url(project)).status_code == 404
    login(client, viewer)
    env = envs["Production"]
    assert client.post(f"{page_url(project)}/environments/{env.id}/window",
                       data=window_data(env)).status_code == 403
    assert client.post(f"{page_url(project)}/stop", data={"stop-reason": "x"}).status_code == 403
    assert db.session.scalar(select(func.count()).select_from(LineStop)) == 0


def test_posts_without_csrf_are_refused(client, login, project, admin, envs):
    login(client, admin)
    response = client.post(f"{page_url(project)}/stop", data={"stop-reason": "x"}, csrf=False)
    assert response.status_code == 400
    assert db.session.scalar(select(func.count()).select_from(LineStop)) == 0


# --- windows --------------------------------------------------------------------------------------


def test_an_admin_sets_a_window_and_the_section_answers(monday, hx, login, project, admin, envs):
    env = envs["Production"]
    login(hx, admin)
    response = hx.post(f"{page_url(project)}/environments/{env.id}/window",
                       data=window_data(env, days=(0, 1, 2, 3), opens="09:00", closes="10:00"))
    assert response.status_code == 200
    assert "<html" not in response.text and "HX-Request" in response.headers["Vary"]
    assert response.text.lstrip().startswith('<section id="window_list"')
    assert "Open Monday–Thursday 09:00–10:00 (Europe/Berlin)." in response.text
    assert "Next window Tuesday 09:00 Europe/Berlin." in response.text  # 11:00 Berlin: closed
    db.session.rollback()  # end the test's read snapshot: the request committed since
    schedule = calendar.get_schedule(env.id)
    assert schedule.timezone == "Europe/Berlin"
    assert [(w.weekday, w.opens_minute, w.closes_minute) for w in schedule.windows] == [
        (d, 540, 600) for d in range(4)]


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"weekdays": []}, "weekdays", "Choose at least one day."),
    ({"weekdays": ["9"]}, "weekdays", "Choose days from Monday to Sunday."),
    ({"weekdays": ["x"]}, "weekdays", "Choose days from Monday to Sunday."),
    ({"opens": "9am"}, "opens", "Use HH:MM, for example 09:00."),
    ({"opens": "24:00"}, "opens", "Not a time of day"),
    ({"closes": "25:00"}, "closes", "Not a time of day"),
    ({"opens": "16:00", "closes": "09:00"}, "closes", "Close after it opens (24:00 for midnight)."),
    ({"timezone": "Mars/Olympus"}, "timezone", "Choose a time zone from the list"),
])
def test_a_bad_window_answers_422_beside_the_field_and_changes_nothing(
    hx, login, project, admin, envs, change, field, message
):
    env = envs["Production"]
    data = window_data(env)
    for key, value in change.items():
        data[f"env-{env.id}-{key}"] = value
    login(hx, admin)
    response = hx.post(f"{page_url(project)}/environments/{env.id}/window", data=data)
    assert response.status_code == 422
    assert message in response.text
    assert f'id="env-{env.id}-{field}-error"' in response.text
    assert 'aria-invalid="true"' in response.text
    assert db.session.scalar(select(func.count()).select_from(DeploymentWindow)) == 0


def test_removing_a_window_makes_the_environment_always_open(monday, client, login, project,
                                                            admin, envs):
    env = envs["Production"]
    calendar.set_windows(env.id, "UTC", [calendar.Window(0, 540, 600)], SYSTEM)
    login(client, admin)
    response = client.post(f"{page_url(project)}/environments/{env.id}/window/remove")
    assert response.status_code == 303
    db.session.rollback()
    assert calendar.get_schedule(env.id).always_open


# --- freezes --------------------------------------------------------------------------------------


def test_an_admin_plans_a_freeze_and_lifts_it(monday, hx, login, project, admin, viewer, envs):
    login(hx, admin)
    response = hx.post(f"{page_url(project)}/freezes",
                       data=freeze_data([envs["Production"]], zone="Europe/Berlin"))
    assert response.status_code == 200
    assert 'id="calendar_page"' in response.text
    db.session.rollback()
    freeze = db.session.scalar(select(Freeze))
    assert freeze.reason == "Holiday freeze" and not freeze.all_environments
    assert freeze.starts_at == datetime(2030, 1, 6, 23, 0, tzinfo=UTC)  # midnight in Berlin
    assert "In force" in response.text and "Production" in response.text
    assert "Frozen" in response.text  # Production's badge
    inbox = [n.message for n in db.session.scalars(
        select(Notification).where(Notification.user_id == viewer.id))]
    assert any("Freeze started" in m and "Holiday freeze" in m for m in inbox), inbox

    response = hx.post(f"{page_url(project)}/freezes/{freeze.id}/lift")
    assert response.status_code == 200
    db.session.rollback()
    assert freeze.lifted_at == MONDAY
    assert "No freeze in force or planned." in response.text
    # Everyone in the project reads both in their inbox, linked to the project's board.
    inbox = unescape(login(hx, viewer).get("/notifications").text)
    assert ("Freeze started on Production (project Acme) until Wednesday 09 Jan 23:00 UTC, by "
            "admin@example.com: Holiday freeze") in inbox
    assert ("Freeze lifted by admin@example.com on Production (project Acme): Holiday freeze"
            in inbox)
    assert f'href="/projects/{project.id}/board"' in inbox


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"freeze-reason": ""}, "reason", "Say why, e.g. Holiday freeze."),
    ({"freeze-starts": "soon"}, "starts", "Give a date and a time"),
    ({"freeze-ends": "2030-01-01T00:00"}, "ends", "End after it starts."),
    ({"freeze-ends": "99999-01-01T00:00"}, "ends", "Give a date and a time"),
    ({"freeze-timezone": "%00"}, "timezone", "Choose a time zone from the list"),
    ({"freeze-environments": []}, "environments", "Choose the environments it freezes."),
    ({"freeze-environments": ["999999"]}, "environments", "Choose environments of this project."),
])
def test_a_bad_freeze_answers_422_beside_the_field_and_changes_nothing(
    monday, hx, login, project, admin, envs, change, field, message
):
    data = freeze_data([envs["Production"]])
    data.update(change)
    login(hx, admin)
    response = hx.post(f"{page_url(project)}/freezes", data=data)
    assert response.status_code == 422
    assert message in response.text
    assert f'id="freeze-{field}-error"' in response.text
    assert db.session.scalar(select(func.count()).select_from(Freeze)) == 0


# --- stop the line --------------------------------------------------------------------------------


def test_stopping_needs_a_reason_and_lifting_resumes(monday, hx, login, project, admin, envs):
    login(hx, admin)
    response = hx.post(f"{page_url(project)}/stop", data={"stop-reason": "  "})
    assert response.status_code == 422
    assert 'id="stop-reason-error"' in response.text and "Say why the line stops" in response.text
    assert db.session.scalar(select(func.count()).select_from(LineStop)) == 0

    response = hx.post(f"{page_url(project)}/stop", data={"stop-reason": "Incident 4711"})
    assert response.status_code == 200
    assert "This project's line is stopped" in response.text
    assert "Incident 4711" in response.text and "admin@example.com" in response.text
    again = hx.post(f"{page_url(project)}/stop", data={"stop-reason": "twice"})
    assert again.status_code == 409 and "stopped already" in again.text

    response = hx.post(f"{page_url(project)}/stop/lift")
    assert response.status_code == 200
    assert "Stop the line</button>" in response.text
    db.session.rollback()
    assert db.session.scalar(select(LineStop)).lifted_at == MONDAY


# --- the banner -----------------------------------------------------------------------------------


def test_boards_and_flag_pages_show_the_banner_while_frozen_or_stopped(
    monday, client, hx, login, make, project, viewer, envs
):
    flag = make.feature(project, "new_checkout")
    login(client, viewer)
    pages = [f"/projects/{project.id}/board", f"/projects/{project.id}/flags/{flag.id}",
             f"/projects/{project.id}/flags"]
    for url in pages:
        assert "is stopped" not in client.get(url).text
    calendar.stop_line(SYSTEM, organisation_id=project.organisation_id, project_id=project.id,
                       reason="Incident 4711")
    calendar.create_freeze(SYSTEM, organisation_id=project.organisation_id,
                           project_id=project.id, starts_at=MONDAY,
                           ends_at=datetime(2030, 1, 10, tzinfo=UTC), reason="Holiday freeze",
                           environment_ids=[envs["Production"].id])
    for url in pages:
        html = unescape(client.get(url).text)
        assert "The line is stopped." in html, url
        assert "Incident 4711" in html
        assert "Frozen until 10 January 2030 00:00 UTC." in html
        assert "Production, by" in html and "Holiday freeze" in html
    fragment = login(hx, viewer).get(f"/projects/{project.id}/calendar/banner")
    assert fragment.status_code == 200 and "<html" not in fragment.text
    assert fragment.text.lstrip().startswith('<div id="calendar_banner"')


# --- the organisation -----------------------------------------------------------------------------


def test_site_admins_freeze_and_stop_the_whole_organisation(monday, hx, client, login, make,
                                                            project, admin):
    login(client, admin)
    assert client.get("/admin/calendar").status_code == 403
    root = make.user(site_admin=True, email="root@example.com")
    login(hx, root)
    assert hx.get("/admin/calendar").status_code == 200
    response = hx.post("/admin/calendar/freezes", data={
        "freeze-starts": "2030-01-07T00:00", "freeze-ends": "2030-01-09T00:00",
        "freeze-timezone": "UTC", "freeze-reason": "Year-end freeze"})
    assert response.status_code == 200, response.text
    assert "Year-end freeze" in response.text and "In force" in response.text
    response = hx.post("/admin/calendar/stop", data={"stop-reason": "Datacentre fire"})
    assert "Every project's line is stopped" in response.text
    html = unescape(client.get(f"/projects/{project.id}/board").text)
    assert "Every project's line is stopped." in html and "Datacentre fire" in html
    assert "of every project, by root@example.com: Year-end freeze" in html
    calendar_page = client.get(page_url(project)).text
    assert "The whole organisation's line is stopped" in calendar_page
    db.session.rollback()
    freeze = db.session.scalar(select(Freeze))
    assert f"/freezes/{freeze.id}/lift" not in calendar_page  # the project cannot lift it
    assert hx.post("/admin/calendar/stop/lift").status_code == 200
    assert hx.post(f"/admin/calendar/freezes/{freeze.id}/lift").status_code == 200
    assert "is stopped" not in client.get(f"/projects/{project.id}/board").text
