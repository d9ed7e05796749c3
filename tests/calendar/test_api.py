"""The release calendar's admin API: windows, freezes and the stop switch, for a project and the
organisation. Admins write; bad input answers 4xx JSON with a reason and changes nothing."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.api.conftest import api, token_for
from tests.support.pipelines import START
from webapp.extensions import db
from webapp.models import AuditEntry, Freeze, LineStop
from webapp.services.actors import Actor
from webapp.services.runs import calendar, controls

from .conftest import the_run


@pytest.fixture
def org_key(project):
    from webapp.services.actors import SYSTEM
    from webapp.services.platform import api_keys

    return api_keys.create_organisation_key(project.organisation, "Incident bot", SYSTEM)[1]


def audit_count():
    return db.session.scalar(select(func.count()).select_from(AuditEntry))


def test_windows_are_read_and_replaced_by_admins(clock, client, envs, admin, editor):
    production = envs["Production"]
    path = f"environments/{production.client_key}/deployment-windows/"
    body = {"timezone": "Europe/Berlin", "windows": [
        {"weekday": "Monday", "opens": "09:00", "closes": "16:00"},
        {"weekday": 1, "opens": "09:00", "closes": "16:00"}]}
    refused = api(client, "PUT", path, token=token_for(editor), json=body)
    assert refused.status_code == 403 and "detail" in refused.get_json()
    done = api(client, "PUT", path, token=token_for(admin), json=body)
    assert done.status_code == 200, done.get_json()
    data = done.get_json()
    assert data["timezone"] == "Europe/Berlin" and len(data["windows"]) == 2
    assert data["open_now"] is False and data["next_opening"] == "2030-01-07T08:00:00Z"
    assert data["note"] == "Production: next window Monday 09:00"
    read = api(client, "GET", path, token=token_for(editor)).get_json()
    assert read["windows"][0] == {"weekday": 0, "day": "Monday", "opens": "09:00",
                                  "closes": "16:00"}


@pytest.mark.parametrize("body, field", [
    ({"timezone": "Nowhere/Else", "windows": []}, "timezone"),
    ({"timezone": "UTC", "windows": [{"weekday": 9, "opens": "09:00", "closes": "10:00"}]},
     "windows.0.weekday"),
    ({"timezone": "UTC", "windows": [{"weekday": 0, "opens": "10:00", "closes": "09:00"}]},
     "windows.0.closes"),
    ({"timezone": "UTC", "windows": "always"}, "windows"),
    ({"windows": []}, "timezone"),
])
def test_bad_windows_answer_422_and_change_nothing(clock, client, envs, admin, body, field):
    token = token_for(admin)
    before = audit_count()
    answer = api(client, "PUT", f"environments/{envs['Staging'].client_key}/deployment-windows/",
                 token=token, json=body)
    assert answer.status_code == 422
    assert field in answer.get_json()["detail"] or field in str(answer.get_json())
    assert audit_count() == before


def test_freezes_are_created_changed_and_lifted_through_the_api(clock, client, project, envs,
                                                                admin, editor):
    base = f"projects/{project.id}/freezes/"
    token = token_for(admin)
    body = {"starts_at": "2030-12-20T00:00:00Z", "ends_at": "2031-01-03T00:00:00Z",
            "reason": "Holidays", "environments": [envs["Production"].id]}
    assert api(client, "POST", base, token=token_for(editor), json=body).status_code == 403
    created = api(client, "POST", base, token=token, json=body)
    assert created.status_code == 201, created.get_json()
    freeze = created.get_json()
    assert (freeze["state"], freeze["environments"], freeze["scope"]) == \
        ("scheduled", [envs["Production"].id], "project")
    listed = api(client, "GET", base, token=token_for(editor)).get_json()
    assert [f["id"] for f in listed["results"]] == [freeze["id"]]
    changed = api(client, "PATCH", f"{base}{freeze['id']}/", token=token,
                  json={"reason": "Holiday freeze", "version": freeze["version"]})
    assert changed.status_code == 200 and changed.get_json()["freeze"]["reason"] == \
        "Holiday freeze"
    stale = api(client, "PATCH", f"{base}{freeze['id']}/", token=token,
                json={"reason": "x", "version": freeze["version"]})
    assert stale.status_code == 409
    lifted = api(client, "POST", f"{base}{freeze['id']}/lift/", token=token)
    assert lifted.status_code == 200 and lifted.get_json()["freeze"]["state"] == "lifted"
    assert api(client, "POST", f"{base}{freeze['id']}/lift/", token=token).status_code == 409
    assert api(client, "GET", base, token=token).get_json()["count"] == 0
    past = api(client, "GET", f"{base}?include_past=true", token=token).get_json()
    assert past["count"] == 1


@pytest.mark.parametrize("body, status", [
    ({"starts_at": "2030-12-20T00:00:00", "ends_at": "2031-01-03T00:00:00Z",
      "reason": "naive"}, 422),
    ({"starts_at": "2031-01-03T00:00:00Z", "ends_at": "2030-12-20T00:00:00Z",
      "reason": "backwards"}, 422),
    ({"starts_at": "2030-12-20T00:00:00Z", "ends_at": "2031-01-03T00:00:00Z",
      "reason": ""}, 422),
    ({"starts_at": "2030-12-20T00:00:00Z", "ends_at": "2031-01-03T00:00:00Z",
      "reason": "x", "environments": [999999]}, 422),
    ({"starts_at": "2029-12-20T00:00:00Z", "ends_at": "2029-12-21T00:00:00Z",
      "reason": "past"}, 422),
])
def test_bad_freezes_answer_4xx_and_change_nothing(clock, client, project, admin, body, status):
    token = token_for(admin)
    before = audit_count()
    answer = api(client, "POST", f"projects/{project.id}/freezes/", token=token, json=body)
    assert answer.status_code == status and answer.get_json()["detail"]
    assert db.session.scalar(select(func.count()).select_from(Freeze)) == 0
    assert audit_count() == before


def test_an_incident_tool_pulls_and_lifts_the_switch(clock, client, project, editor, org_key,
                                                     make_pipeline, make):
    pipeline = make_pipeline([{"env": "Staging", "trigger": "WAIT_FOR", "wait": 600,
                               "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]}])
    flag = make.feature(project)
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    base = f"projects/{project.id}/stop/"
    assert api(client, "POST", base, token=token_for(editor),
               json={"reason": "x"}).status_code == 403
    assert api(client, "POST", base, key=org_key, json={}).status_code == 422
    pulled = api(client, "POST", base, key=org_key, json={"reason": "PagerDuty incident 7"})
    assert pulled.status_code == 201 and pulled.get_json()["held"] == 1
    assert the_run(flag).hold_kind == "stop"
    assert api(client, "POST", base, key=org_key, json={"reason": "again"}).status_code == 409
    state = api(client, "GET", base, token=token_for(editor)).get_json()
    assert state["stopped"] is True and state["holds"][0]["why"] == "PagerDuty incident 7"
    clock.shift(60)
    lifted = api(client, "POST", f"{base}lift/", key=org_key)
    assert lifted.status_code == 200, lifted.get_json()
    assert lifted.get_json()["released"]["resumed"] == 1
    assert the_run(flag).due_at == START + timedelta(seconds=660)
    assert api(client, "POST", f"{base}lift/", key=org_key).status_code == 409


def test_the_organisation_switch_is_for_its_key_and_site_admins(clock, client, project, admin,
                                                                org_key, foreign_org_key):
    org = project.organisation_id
    base = f"organisations/{org}/stop/"
    assert api(client, "POST", base, token=token_for(admin),
               json={"reason": "x"}).status_code == 403
    assert api(client, "POST", base, key=foreign_org_key,
               json={"reason": "x"}).status_code == 404
    assert api(client, "GET", base, token=token_for(admin)).get_json()["stopped"] is False
    assert api(client, "POST", base, key=org_key, json={"reason": "Outage"}).status_code == 201
    assert db.session.scalar(select(LineStop.scope)) == f"organisation:{org}"
    assert calendar.holds_for_project(project.id)[0].scope == "organisation"
    assert api(client, "POST", f"{base}lift/", key=org_key).status_code == 200
    freeze = api(client, "POST", f"organisations/{org}/freezes/", key=org_key, json={
        "starts_at": "2030-12-20T00:00:00Z", "ends_at": "2031-01-03T00:00:00Z",
        "reason": "Year end"})
    assert freeze.status_code == 201 and freeze.get_json()["scope"] == "organisation"
    seen = api(client, "GET", f"projects/{project.id}/freezes/", token=token_for(admin))
    assert [f["reason"] for f in seen.get_json()["results"]] == ["Year end"]
