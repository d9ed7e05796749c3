"""Alert checks: a real Alertmanager routes its webhook to Railyard's receiver (a live server)."""

import json

import pytest
from sqlalchemy import select

from tests.gates.conftest import wait_until
from webapp.extensions import db
from webapp.models import AuditEntry, FeatureState, PipelineRun
from webapp.models.health import FiringAlert
from webapp.services.actors import Actor
from webapp.services.runs import controls, sweep

pytestmark = pytest.mark.prometheus
SECRET = "receiver-secret-0123456789"
BOARD = "/projects/{}/pipelines/{}/board"


@pytest.fixture
def flag(make, project):
    return make.feature(project, "guarded_flag")


@pytest.fixture
def alert_guarded(guard):
    return guard([
        {"env": "Development", "name": "Dev", "actions": [{"type": "TOGGLE_FEATURE",
                                                           "enabled": True}]},
        {"env": "Staging", "name": "Stage", "trigger": "WAIT_FOR", "wait": 600,
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
    ], checks={0: [{"kind": "ALERT", "name": "paging alerts"}],
               1: [{"kind": "ALERT", "name": "paging alerts", "selector": {"severity": "page"}}]},
        on_unhealthy={0: "ROLL_BACK", 1: "ROLL_BACK"})


def _alert(name):
    db.session.rollback()  # a fresh snapshot: the receiver commits in the server's thread
    return db.session.scalar(select(FiringAlert.id).where(FiringAlert.name == name))


def _run(flag):
    db.session.rollback()
    return db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == flag.id))


def test_alertmanager_alert_rolls_the_flag_back_once(
        clock, live_server, alertmanager_for, integrate, project, editor, envs, flag,
        alert_guarded):
    integrate(alert_secret=SECRET)
    alertmanager = alertmanager_for(f"{live_server}/hooks/alerts/{SECRET}")
    controls.add_flag(project, alert_guarded.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    clock.shift(1)
    sweep.drain()
    assert (_run(flag).status, _run(flag).stage_position) == ("watching", 1)
    # An alert without the stage's selector concerns the flag but not this check.
    alertmanager.post_alerts([{"labels": {"alertname": "Noise", "railyard_flag": "guarded_flag",
                                          "severity": "ticket"}}])
    wait_until(lambda: _alert("Noise"), what="the first alert to reach Railyard")
    sweep.drain()
    assert _run(flag).status == "watching"
    alertmanager.post_alerts([{"labels": {"alertname": "HighErrors",
                                          "railyard_flag": "guarded_flag", "severity": "page"}}])
    wait_until(lambda: _alert("HighErrors"), what="the paging alert to reach Railyard")
    sweep.drain()  # the receiver made the run due now: the gate decides
    run = _run(flag)
    assert run.status == "rolled_back"
    for name in ("Development", "Staging"):
        assert not db.session.scalar(select(FeatureState.enabled).where(
            FeatureState.feature_id == flag.id, FeatureState.environment_id == envs[name].id))
    clock.shift(5)
    sweep.drain()
    sweep.sweep()
    automatic = db.session.scalars(select(AuditEntry).where(
        AuditEntry.event_type == "RELEASE_PIPELINE_FEATURE_ROLLED_BACK_AUTOMATICALLY")).all()
    assert len(automatic) == 1 and "HighErrors" in automatic[0].message


def _post(client, payload, secret=SECRET, **kwargs):
    return client.post(f"/hooks/alerts/{secret}", data=json.dumps(payload),
                       content_type="application/json", **kwargs)


def test_held_by_an_alert_then_resolved_and_retried_the_stage_completes(
        client, clock, integrate, project, editor, flag, alert_guarded):
    integrate(alert_secret=SECRET)
    controls.add_flag(project, alert_guarded.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    clock.shift(1)
    sweep.drain()
    firing = {"status": "firing", "fingerprint": "abc",
              "labels": {"alertname": "Slow", "railyard_pipeline": "Guarded",
                         "severity": "page"}}
    assert _post(client, {"alerts": [firing]}).get_json()["runs_woken"] == 1
    clock.shift(1)
    # On HOLD it would hold; this stage rolls back, so make it hold first to see "resolved".
    run = _run(flag)
    db.session.execute(db.update(type(run.stage)).where(type(run.stage).id == run.stage_id)
                       .values(on_unhealthy="HOLD"))
    db.session.commit()
    sweep.drain()
    assert _run(flag).status == "halted"
    assert _post(client, {"alerts": [{**firing, "status": "resolved"}]}).status_code == 200
    db.session.rollback()
    assert db.session.scalar(select(FiringAlert.id)) is None
    controls.retry(project, _run(flag).id, Actor.for_user(editor))  # a person decides to go on
    sweep.drain()
    run = _run(flag)
    assert (run.status, run.stage_position) == ("watching", 1)
    recovered = db.session.scalars(select(AuditEntry).where(
        AuditEntry.event_type == "HEALTH_CHECK_RECOVERED")).all()
    assert len(recovered) == 1 and recovered[0].after["value"] == 0.0
    clock.shift(600)
    sweep.drain()
    assert _run(flag).status == "launched"


@pytest.mark.parametrize("payload, status", [
    ({"alerts": "no"}, 400),
    ({"alerts": [{"labels": {"a": 1}}]}, 400),
    ({"alerts": [{"status": "weird", "labels": {}}]}, 400),
    ([], 400),
])
def test_malformed_payloads_change_nothing(client, integrate, payload, status):
    integrate(alert_secret=SECRET)
    assert _post(client, payload).status_code == status
    db.session.rollback()
    assert db.session.scalar(select(FiringAlert.id)) is None


def test_unknown_secret_and_bearer_token(client, integrate):
    integrate(alert_secret=SECRET)
    body = {"alerts": [{"labels": {"alertname": "X", "railyard_flag": "f"}}]}
    assert _post(client, body, secret="wrong").status_code == 404
    assert client.post("/hooks/alerts", json=body).status_code == 404
    ok = client.post("/hooks/alerts", json=body, headers={"Authorization": f"Bearer {SECRET}"})
    assert ok.status_code == 200
    db.session.rollback()
    assert db.session.scalar(select(FiringAlert.name)) == "X"


def test_board_card_and_flag_track_show_each_checks_state(
        client, login, clock, integrate, project, editor, flag, alert_guarded):
    integrate(alert_secret=SECRET)
    controls.add_flag(project, alert_guarded.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    login(client, editor)
    board = client.get(BOARD.format(project.id, alert_guarded.id)).get_data(as_text=True)
    assert "Watching health" in board and "check-watching" in board and "paging alerts" in board
    clock.shift(1)
    sweep.drain()
    _post(client, {"alerts": [{"labels": {"alertname": "Slow", "railyard_flag": "guarded_flag",
                                          "severity": "page"}}]})
    run = _run(flag)
    db.session.execute(db.update(type(run.stage)).where(type(run.stage).id == run.stage_id)
                       .values(on_unhealthy="HOLD"))
    db.session.commit()
    sweep.drain()
    board = client.get(BOARD.format(project.id, alert_guarded.id)).get_data(as_text=True)
    assert "Held by health check paging alerts: 1 alert(s) firing: Slow" in board
    track = client.get(f"/projects/{project.id}/flags/{flag.id}/pipeline").get_data(as_text=True)
    assert "check-failing" in track and "paging alerts" in track


def test_a_board_search_shows_the_checks_of_the_cards_it_finds(
        client, login, clock, integrate, project, editor, flag, alert_guarded):
    integrate(alert_secret=SECRET)
    controls.add_flag(project, alert_guarded.id, flag.id, Actor.for_user(editor))
    sweep.drain()
    login(client, editor)
    found = client.get(BOARD.format(project.id, alert_guarded.id) + "?q=GUARDED").text
    assert "guarded_flag" in found and "check-watching" in found and "paging alerts" in found
    assert "check-watching" not in client.get(
        BOARD.format(project.id, alert_guarded.id) + "?q=nothing_like_it").text
