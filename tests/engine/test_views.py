"""The flag page's pipeline panel, the pipeline page's flags panel, and the controls."""

import pytest
from sqlalchemy import select

from webapp import redis_conn
from webapp.extensions import db
from webapp.models import PipelineRun
from webapp.services.actors import Actor
from webapp.services.runs import controls, sweep

from .test_engine import state, the_run


def flag_url(project, flag, suffix=""):
    return f"/projects/{project.id}/flags/{flag.id}/pipeline{suffix}"


def test_panel_offers_only_published_live_pipelines(clock, client, hx, login, make, project,
                                                    editor, two_stage, make_pipeline):
    make_pipeline([{"env": "Development", "actions": [
        {"type": "TOGGLE_FEATURE", "enabled": True}]}], name="A draft", status="draft")
    gone = make_pipeline([{"env": "Development", "actions": [
        {"type": "TOGGLE_FEATURE", "enabled": True}]}], name="Gone")
    gone.deleted_at = clock and gone.created_at
    db.session.commit()
    flag = make.feature(project, "checkout")
    login(hx, editor)
    response = hx.get(flag_url(project, flag))
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<html" not in body and "HX-Request" in response.headers["Vary"]
    assert "Add to release pipeline" in body and "Two step" in body
    assert "A draft" not in body and "Gone" not in body
    login(client, editor)
    page = client.get(flag_url(project, flag))
    assert page.status_code == 200 and "<html" in page.get_data(as_text=True)


def test_add_from_the_flag_page_enqueues_and_shows_the_track(clock, hx, login, make, project,
                                                             editor, envs, two_stage):
    flag = make.feature(project, "checkout")
    login(hx, editor)
    response = hx.post(flag_url(project, flag), data={"pipeline_id": two_stage.id})
    body = response.get_data(as_text=True)
    assert response.status_code == 200, body
    assert response.headers["HX-Trigger"] == "flag-changed"
    assert "Two step" in body and "Pause" in body and "Roll back" in body
    run = the_run(flag)
    assert redis_conn.queue().job_ids == [f"advance-{run.id}-v1"]


def test_add_errors_show_beside_the_field(clock, hx, login, make, project, editor, two_stage):
    flag = make.feature(project)
    controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    other = make.feature(project)
    login(hx, editor)
    response = hx.post(flag_url(project, other), data={"pipeline_id": 999})
    assert response.status_code == 422
    assert "Not a valid choice" in response.get_data(as_text=True)


def test_viewers_see_the_track_but_no_controls(clock, hx, login, make, project, editor, viewer,
                                               two_stage):
    flag = make.feature(project)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    login(hx, viewer)
    body = hx.get(flag_url(project, flag)).get_data(as_text=True)
    assert "Two step" in body and 'hx-trigger="project-changed from:body"' in body
    assert "Pause" not in body and "Add to release pipeline" not in body
    assert hx.post(f"/projects/{project.id}/runs/{bell.run_id}/pause").status_code == 403
    assert hx.post(flag_url(project, make.feature(project)),
                   data={"pipeline_id": two_stage.id}).status_code == 403


def test_other_projects_and_csrf(clock, client, login, make, project, editor, two_stage):
    flag = make.feature(project)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    stranger = make.user(project=make.project("Other"))
    login(client, stranger)
    assert client.get(flag_url(project, flag)).status_code == 404
    login(client, editor)
    assert client.post(f"/projects/{project.id}/runs/{bell.run_id}/pause",
                       csrf=False).status_code == 400


@pytest.mark.parametrize("action, status", [("pause", "paused"), ("advance", "waiting")])
def test_controls_answer_the_refreshed_panel(clock, hx, login, make, project, editor, two_stage,
                                             action, status):
    flag = make.feature(project)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/runs/{bell.run_id}/{action}")
    assert response.status_code == 200
    assert the_run(flag).status == status
    assert 'id="run_panel"' in response.get_data(as_text=True)


def test_remove_and_rollback_ask_first(clock, hx, client, login, make, project, editor, envs,
                                       two_stage):
    flag = make.feature(project)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    sweep.advance(bell.run_id, bell.version)
    login(hx, editor)
    url = f"/projects/{project.id}/runs/{bell.run_id}/rollback"
    asking = hx.get(url).get_data(as_text=True)
    assert "Yes, roll back" in asking and the_run(flag).status == "waiting"
    done = hx.post(url)
    assert done.status_code == 200
    assert the_run(flag).status == "rolled_back"
    assert state(flag, envs["Development"]) == (False, None)
    assert "Add to release pipeline" in done.get_data(as_text=True)
    # acting on the ended run: a clear 409
    again = hx.post(url)
    assert again.status_code == 409 and "already ended" in again.get_data(as_text=True)
    # without htmx: a 303 to the flag page
    login(client, editor)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    response = client.post(f"/projects/{project.id}/runs/{bell.run_id}/remove")
    assert response.status_code == 303


def test_resume_a_running_flag_is_a_clear_409(clock, hx, login, make, project, editor, two_stage):
    flag = make.feature(project)
    bell = controls.add_flag(project, two_stage.id, flag.id, Actor.for_user(editor))
    login(hx, editor)
    response = hx.post(f"/projects/{project.id}/runs/{bell.run_id}/resume")
    assert response.status_code == 409 and "not paused" in response.get_data(as_text=True)


def test_pipeline_panel_lists_flags_per_stage_and_adds_many(clock, hx, login, make, project,
                                                            editor, two_stage):
    flags = [make.feature(project, f"flag_{n}") for n in range(3)]
    busy = make.feature(project, "busy")
    controls.add_flag(project, two_stage.id, busy.id, Actor.for_user(editor))
    login(hx, editor)
    url = f"/projects/{project.id}/pipelines/{two_stage.id}/flags"
    body = hx.get(url).get_data(as_text=True)
    assert "busy" in body and f'value="{busy.id}"' not in body
    response = hx.post(url, data={"feature_ids": [f.id for f in flags[:2]]})
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "flag_0" in body and "flag_1" in body
    db.session.rollback()
    assert len(db.session.scalars(select(PipelineRun)).all()) == 3
    [job_id] = redis_conn.queue().job_ids  # one job for the two
    assert job_id.endswith("-n2")
    empty = hx.post(url, data={})
    assert empty.status_code == 422 and "Choose at least one flag" in empty.get_data(as_text=True)
