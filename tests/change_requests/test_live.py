"""Issue 13: every open page learns that what it shows changed (the change watcher), dashboard
HTML is never kept by the browser, the inbox says what waits for me, and a reviewer approves
several requests of one stage from one page."""

import html
import re

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import ChangeRequestReview, Notification, PipelineRun
from webapp.services.actors import Actor
from webapp.services.change_requests import workflow
from webapp.services.pages import live
from webapp.services.platform import flags
from webapp.services.runs import controls, sweep

from .conftest import request_of

WATCH = re.compile(r'id="change_watch"[^>]*hx-get="([^"]+)"[^>]*hx-trigger="every (\d+)s')


def watcher(page_html: str) -> tuple[str, int]:
    url, interval = WATCH.search(page_html).groups()
    return html.unescape(url), int(interval)


def check(client, url):
    return client.get(url, headers={"HX-Request": "true"})


def test_the_change_check_answers_204_until_the_project_changes(
    clock, client, login, viewer, editor, project, make, envs
):
    flag = make.feature(project, "checkout")
    page = login(client, viewer).get(f"/projects/{project.id}/flags/{flag.id}")
    url, interval = watcher(page.text)
    assert interval == 10  # nothing in flight: the idle rate
    quiet = check(client, url)
    assert quiet.status_code == 204 and quiet.data == b""
    assert quiet.headers["Cache-Control"] == "no-store"

    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)
    changed = check(client, url)
    assert changed.status_code == 200
    assert changed.headers["HX-Trigger"] == "project-changed"
    assert len(changed.data) < 1024
    assert 'id="inbox_link"' in changed.text and 'hx-swap-oob="true"' in changed.text
    new_url, _ = watcher(changed.text)
    assert new_url != url and check(client, new_url).status_code == 204


def test_the_token_moves_with_every_kind_of_change(clock, project, editor, reviewer, make,
                                                   envs, pipeline):
    seen = [live.project_token(project.id).value]

    def moved():
        db.session.rollback()
        token = live.project_token(project.id).value
        assert token not in seen
        seen.append(token)

    flag = make.feature(project, "checkout")
    moved()  # the flag was created (audited)
    flags.set_state(flag, envs["Development"].id, Actor.for_user(editor), enabled=True)
    moved()
    bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
    moved()
    sweep.advance_many([(bell.run_id, bell.version)])
    moved()  # the stage applied by itself, and the run waits for approval in Production
    request = request_of(flag)
    workflow.approve(project.id, request.id, Actor.for_user(reviewer),
                            seen_hash=request.changes_hash)
    moved()
    workflow.commit(project.id, request.id, Actor.for_user(reviewer))
    moved()


def test_moving_runs_check_every_2s_and_waiting_ones_at_the_idle_rate(
    clock, app, client, login, viewer, project, editor, make, pipeline, to_production
):
    flag = make.feature(project, "checkout")
    controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))  # waiting: moves alone
    page = login(client, viewer).get(f"/projects/{project.id}/board")
    assert watcher(page.text)[1] == 2
    app.config["LIVE_IDLE_SECONDS"] = 3  # a deployment may check idle pages more often
    other = make.feature(project, "search")
    db.session.rollback()
    run = db.session.scalar(select(PipelineRun).where(PipelineRun.feature_id == flag.id))
    controls.remove(project, run.id, Actor.for_user(editor))
    to_production(other)  # only a run awaiting approval: nothing moves by itself
    page = client.get(f"/projects/{project.id}/board")
    assert watcher(page.text)[1] == 3


@pytest.mark.parametrize("project_arg, status", [("abc", 400), ("999999", 404)])
def test_the_change_check_refuses_bad_and_foreign_projects(client, login, viewer, project_arg,
                                                          status):
    response = login(client, viewer).get(f"/changes?project={project_arg}&since=x")
    assert response.status_code == status


def test_the_change_check_sends_a_signed_out_page_to_the_sign_in_page(client, project):
    url = f"/changes?project={project.id}&since=x"
    response = client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200 and response.headers["HX-Redirect"] == "/login"
    assert "HX-Trigger" not in response.headers and response.data == b""
    assert client.get(url).status_code == 303


@pytest.mark.parametrize("path", ["/projects/{p}/flags", "/projects/{p}/board",
                                  "/projects/{p}/change-requests", "/projects/{p}/audit",
                                  "/projects/{p}/pipelines", "/notifications"])
def test_dashboard_pages_and_fragments_are_never_cached(client, hx, login, viewer, project,
                                                        path):
    url = path.format(p=project.id)
    for c in (login(client, viewer), login(hx, viewer)):
        response = c.get(url)
        assert response.status_code == 200, url
        assert response.headers["Cache-Control"] == "no-store"


def test_the_inbox_counts_what_waits_and_links_to_it(
    clock, client, hx, login, reviewer, editor, project, make, to_production
):
    flag = make.feature(project, "checkout")
    request = to_production(flag)
    page = login(client, reviewer).get(f"/projects/{project.id}/flags")
    assert 'aria-label="Inbox: 1 waiting"' in page.text
    inbox = client.get("/notifications").text
    assert f'/projects/{project.id}/change-requests/{request.id}"' in inbox
    assert "Change requests you may review" in inbox
    # The requester has nothing to review (their own request is not counted); they were told
    # that Development completed for the flag they added.
    mine = login(client, editor).get("/notifications").text
    assert "Change requests you may review" not in mine and "Nothing waits for you" in mine
    assert "Dev" in mine and "completed" in mine and 'aria-label="Inbox: 1 waiting"' in mine


def test_notifications_are_marked_read_one_or_all_and_only_ones_own(
    clock, client, hx, login, reviewer, editor, project, make
):
    notes = []
    for n in range(3):
        note = Notification(user_id=reviewer.id, project_id=project.id, kind="stage_completed",
                            message=f"Stage {n} completed", link=f"/projects/{project.id}/flags")
        db.session.add(note)
        notes.append(note)
    theirs = Notification(user_id=editor.id, project_id=project.id, kind="stage_completed",
                          message="Not yours", link="/")
    db.session.add(theirs)
    db.session.commit()
    login(hx, reviewer)
    assert "Inbox: 3 waiting" in login(client, reviewer).get("/notifications").text

    response = hx.post(f"/notifications/{notes[0].id}/read")
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "inbox-changed"
    assert "2 unread" in response.text
    assert hx.post(f"/notifications/{notes[0].id}/unread").status_code == 200
    assert hx.post(f"/notifications/{theirs.id}/read").status_code == 404
    everything = hx.post("/notifications/read")
    assert everything.status_code == 200, everything.text
    assert "0 unread" in everything.text, everything.text
    db.session.rollback()  # a fresh snapshot
    assert all(db.session.get(Notification, n.id).read_at is not None for n in notes)
    assert db.session.get(Notification, theirs.id).read_at is None
    assert hx.post("/notifications/read", csrf=False).status_code == 400


def test_a_board_search_shows_the_change_request_a_card_waits_for(
    clock, client, login, reviewer, project, make, to_production
):
    alpha, beta = make.feature(project, "alpha"), make.feature(project, "beta")
    first, second = to_production(alpha, beta)
    pipeline_id = db.session.get(PipelineRun, first.run_id).pipeline_id
    board = login(client, reviewer).get(
        f"/projects/{project.id}/pipelines/{pipeline_id}/board?q=ALPH").text
    assert f"change request #{first.id}" in board
    assert f"change request #{second.id}" not in board and ">beta</a>" not in board


def test_a_reviewer_approves_several_requests_of_one_stage_each_bound_to_its_changes(
    clock, client, hx, login, reviewer, editor, project, make, to_production
):
    first, second, third = (make.feature(project, n) for n in ("alpha", "beta", "gamma"))
    requests = to_production(first, second, third)
    stage_id = requests[0].stage_id
    url = f"/projects/{project.id}/change-requests/stage/{stage_id}"
    pipeline_id = db.session.get(PipelineRun, requests[0].run_id).pipeline_id
    board = login(client, reviewer).get(f"/projects/{project.id}/pipelines/{pipeline_id}/board")
    assert f"change request #{requests[0].id}" in board.text
    assert url in board.text  # "review the 3 waiting requests together"

    page = login(hx, reviewer).get(url)
    assert page.status_code == 200
    for r in requests:
        assert f'value="{r.id}:{r.changes_hash}"' in page.text
    chosen = [f"{requests[0].id}:{requests[0].changes_hash}",
              f"{requests[1].id}:{'0' * 64}"]  # seen as other changes: refused
    response = hx.post(url, data={"request": chosen})
    assert response.status_code == 409
    assert f"#{requests[0].id}: approved" in response.text
    assert "updated since you opened" in response.text
    db.session.rollback()  # a fresh snapshot
    reviews = db.session.scalars(select(ChangeRequestReview)).all()
    assert [(r.change_request_id, r.changes_hash) for r in reviews] == [
        (requests[0].id, requests[0].changes_hash)]

    assert hx.post(url, data={}).status_code == 422
    assert hx.post(url, data={"request": ["nonsense"]}).status_code == 400
    # The requester gets no boxes, and the use case refuses them anyway.
    as_editor = login(client, editor).get(url).text
    assert 'type="checkbox"' not in as_editor
    refused = login(hx, editor).post(url, data={
        "request": [f"{requests[2].id}:{requests[2].changes_hash}"]})
    assert refused.status_code == 409 and "someone else" in refused.text
    assert hx.get(f"/projects/{project.id}/change-requests/stage/999999").status_code == 404
