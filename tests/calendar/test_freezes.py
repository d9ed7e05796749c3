"""Freezes: no stage applies into a frozen environment; flags wait in place with their remaining
time and continue when it ends; change requests into it need an admin's reason (break glass)."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from tests.support.pipelines import START
from webapp.extensions import db
from webapp.models import ChangeRequest, Environment, FeatureState
from webapp.services.actors import Actor
from webapp.services.change_requests import opening, workflow
from webapp.services.errors import Conflict, Forbidden, Invalid
from webapp.services.runs import calendar, calendar_timeline, controls, sweep

from .conftest import entries, notes, the_run

HOUR = timedelta(hours=1)


def enabled(flag, env):
    db.session.rollback()
    return db.session.scalar(select(FeatureState.enabled).where(
        FeatureState.feature_id == flag.id, FeatureState.environment_id == env.id))


@pytest.fixture
def staged(make, project, editor, make_pipeline):
    """Development at once, Staging after a day: a flag waiting in Staging (due START + 1 day)."""
    pipeline = make_pipeline([
        {"env": "Development", "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
        {"env": "Staging", "trigger": "WAIT_FOR", "wait": 86400,
         "actions": [{"type": "TOGGLE_FEATURE", "enabled": True}]},
    ])

    def _add(name):
        flag = make.feature(project, name)
        bell = controls.add_flag(project, pipeline.id, flag.id, Actor.for_user(editor))
        sweep.advance(bell.run_id, bell.version)
        return flag

    return _add


def test_a_freeze_holds_in_flight_flags_with_their_remaining_time_and_releases_them(
        clock, project, envs, staged, boss, viewer):
    flag = staged("checkout")
    freeze, _ = calendar.create_freeze(
        boss, organisation_id=project.organisation_id, project_id=project.id,
        starts_at=START + 2 * HOUR, ends_at=START + 50 * HOUR, reason="Holidays",
        environment_ids=[envs["Staging"].id])
    assert freeze.state(START) == "scheduled" and the_run(flag).hold_kind is None
    [created] = entries(calendar.EVENT_FREEZE_CREATED)
    assert "Holidays" in created.message

    clock.move_to(START + 2 * HOUR)
    calendar.tick()
    run = the_run(flag)
    assert (run.hold_kind, run.hold_id, run.due_at) == ("freeze", freeze.id, None)
    assert run.held_due_at == START + 24 * HOUR and run.held_since == START + 2 * HOUR
    assert len(entries(calendar.EVENT_FREEZE_STARTED)) == 1
    assert len(entries(calendar.EVENT_HELD, run_id=run.id)) == 1
    started = notes("freeze_started")
    assert {n.user_id for n in started} >= {viewer.id} and "Holidays" in started[0].message
    calendar.tick()  # a second sweeper: nothing twice
    assert len(notes("freeze_started")) == len(started)
    assert len(entries(calendar.EVENT_HELD, run_id=run.id)) == 1

    # The banner and the expected launch know about it.
    [hold] = calendar.holds_for_project(project.id)
    assert (hold.kind, hold.why, hold.until) == ("freeze", "Holidays", START + 50 * HOUR)
    timeline = calendar_timeline.run_times(the_run(flag))
    assert timeline.stages[1].acts_at == START + 50 * HOUR + 22 * HOUR
    clock.move_to(START + 30 * HOUR)  # past its old due time: it still waits
    sweep.drain()
    assert enabled(flag, envs["Staging"]) is False

    clock.move_to(START + 50 * HOUR)
    released = calendar.tick()
    run = the_run(flag)
    assert released.resumed == 1 and run.hold_kind is None
    assert run.due_at == START + 50 * HOUR + 22 * HOUR  # the 22 hours it had left
    assert len(entries(calendar.EVENT_FREEZE_ENDED)) == 1 and len(notes("freeze_ended")) >= 1
    assert len(entries(calendar.EVENT_RELEASED, run_id=run.id)) == 1
    clock.move_to(run.due_at)
    sweep.drain()
    assert enabled(flag, envs["Staging"]) is True and the_run(flag).status == "launched"


def test_a_flag_falling_due_during_a_freeze_waits_for_its_end(clock, project, envs, staged,
                                                              root):
    calendar.create_freeze(root, organisation_id=project.organisation_id, project_id=None,
                           starts_at=START, ends_at=START + 30 * HOUR, reason="Org freeze",
                           environment_ids=[envs["Staging"].id])
    flag = staged("search")  # enters Staging after the freeze started: its clock runs
    assert enabled(flag, envs["Development"]) is True
    assert the_run(flag).due_at == START + 24 * HOUR
    clock.move_to(START + 24 * HOUR)
    sweep.drain()
    assert enabled(flag, envs["Staging"]) is False
    assert (the_run(flag).hold_kind, the_run(flag).due_at) == ("freeze", None)
    clock.move_to(START + 30 * HOUR)
    released = calendar.tick()
    assert released.resumed == 1 and the_run(flag).due_at == START + 30 * HOUR
    sweep.drain()
    assert enabled(flag, envs["Staging"]) is True


def test_other_environments_keep_moving_and_lifting_ends_a_freeze_early(
        clock, project, envs, staged, boss, make_pipeline):
    flag = staged("billing")
    freeze, _ = calendar.create_freeze(
        boss, organisation_id=project.organisation_id, project_id=project.id,
        starts_at=START, ends_at=START + 100 * HOUR, reason="Audit",
        environment_ids=[envs["Production"].id])
    assert the_run(flag).hold_kind is None  # Staging is not frozen
    freeze2, _ = calendar.create_freeze(
        boss, organisation_id=project.organisation_id, project_id=project.id,
        starts_at=START, ends_at=START + 100 * HOUR, reason="Staging too",
        environment_ids=[envs["Staging"].id])
    assert the_run(flag).hold_id == freeze2.id
    clock.move_to(START + HOUR)
    lifted, released = calendar.lift_freeze(boss, freeze2.id,
                                            organisation_id=project.organisation_id,
                                            project_id=project.id)
    assert lifted.state(START + HOUR) == "lifted" and released.resumed == 1
    assert the_run(flag).due_at == START + 25 * HOUR  # held an hour: an hour later
    with pytest.raises(Conflict):
        calendar.lift_freeze(boss, freeze2.id, organisation_id=project.organisation_id,
                             project_id=project.id)


def test_freeze_input_and_roles(app, project, envs, editor, boss, make):
    other = make.project("Other")
    org = project.organisation_id
    with pytest.raises(Forbidden):
        calendar.create_freeze(Actor.for_user(editor), organisation_id=org,
                               project_id=project.id, starts_at=START,
                               ends_at=START + HOUR, reason="x")
    with pytest.raises(Forbidden):  # a project admin is no organisation admin
        calendar.create_freeze(boss, organisation_id=org, project_id=None, starts_at=START,
                               ends_at=START + HOUR, reason="x")
    for kwargs, field in (
            ({"ends_at": START - HOUR}, "ends_at"),
            ({"reason": "  "}, "reason"),
            ({"environment_ids": [make.environments(other)[0].id]}, "environments")):
        args = {"starts_at": START, "ends_at": START + HOUR, "reason": "Why", **kwargs}
        with pytest.raises(Invalid) as caught:
            calendar.create_freeze(boss, organisation_id=org, project_id=project.id, **args)
        assert field in caught.value.field_errors
    assert calendar.list_freezes(org, project.id) == []


def test_changing_a_freeze_is_audited_and_a_stale_version_is_refused(clock, project, envs,
                                                                     boss, staged):
    flag = staged("profile")
    freeze, _ = calendar.create_freeze(
        boss, organisation_id=project.organisation_id, project_id=project.id,
        starts_at=START, ends_at=START + 10 * HOUR, reason="Deploy freeze",
        environment_ids=[envs["Staging"].id])
    assert the_run(flag).hold_kind == "freeze"
    changed, released = calendar.update_freeze(
        boss, freeze.id, organisation_id=project.organisation_id, project_id=project.id,
        expected_version=freeze.version, environment_ids=[envs["Production"].id],
        ends_at=START + 20 * HOUR)
    assert changed.version == freeze.version + 1 and released.resumed == 1
    assert the_run(flag).hold_kind is None
    [entry] = entries(calendar.EVENT_FREEZE_UPDATED)
    assert entry.before["environments"] == [envs["Staging"].id]
    assert entry.after["environments"] == [envs["Production"].id]
    with pytest.raises(Conflict):
        calendar.update_freeze(boss, freeze.id, organisation_id=project.organisation_id,
                               project_id=project.id, expected_version=freeze.version,
                               reason="stale")
    calendar.update_freeze(boss, freeze.id, organisation_id=project.organisation_id,
                           project_id=project.id, environment_ids=[envs["Staging"].id])
    assert the_run(flag).hold_kind == "freeze"  # covered again: held at once


def test_break_glass_commits_into_a_frozen_environment_only_for_an_admin_with_a_reason(
        clock, make, project, envs, editor, admin, boss):
    production = db.session.get(Environment, envs["Production"].id)
    production.minimum_change_request_approvals = 1
    db.session.commit()
    flag = make.feature(project, "payments")
    reviewer = make.user(project=project, role="editor")
    request = opening.set_state(flag, production.id, Actor.for_user(editor),
                                        enabled=True)
    workflow.approve(project.id, request.id, Actor.for_user(reviewer))
    calendar.create_freeze(boss, organisation_id=project.organisation_id,
                           project_id=project.id, starts_at=START, ends_at=START + HOUR,
                           reason="Incident review")
    with pytest.raises(Conflict, match="break glass"):
        workflow.commit(project.id, request.id, Actor.for_user(editor))
    db.session.rollback()
    with pytest.raises(Conflict, match="only an admin"):
        workflow.commit(project.id, request.id, Actor.for_user(editor),
                               break_glass_reason="urgent")
    db.session.rollback()
    with pytest.raises(Conflict):
        workflow.commit(project.id, request.id, boss)
    db.session.rollback()
    workflow.commit(project.id, request.id, boss,
                           break_glass_reason="Payment outage fix")
    assert db.session.get(ChangeRequest, request.id).status == "committed"
    assert enabled(flag, production) is True
    [glass] = entries(calendar.EVENT_BREAK_GLASS)
    assert "Payment outage fix" in glass.message and glass.actor_user_id == admin.id
    assert glass.after["hold"]["kind"] == "freeze"


def test_the_request_page_says_the_environment_is_frozen_and_asks_an_admin_why(
        clock, client, login, make, project, envs, editor, admin, boss):
    production = db.session.get(Environment, envs["Production"].id)
    production.minimum_change_request_approvals = 1
    db.session.commit()
    flag = make.feature(project, "checkout")
    reviewer = make.user(project=project, role="editor")
    request = opening.set_state(flag, production.id, Actor.for_user(editor), enabled=True)
    workflow.approve(project.id, request.id, Actor.for_user(reviewer))
    calendar.create_freeze(boss, organisation_id=project.organisation_id,
                           project_id=project.id, starts_at=START, ends_at=START + HOUR,
                           reason="Incident review")
    page = f"/projects/{project.id}/change-requests/{request.id}"

    login(client, editor)  # an editor sees why, and no way to commit
    html = client.get(page).text
    assert "Production: " in html and "Incident review" in html
    assert "Only an admin can commit it before then" in html
    assert 'name="break_glass_reason"' not in html

    login(client, admin)
    html = client.get(page).text
    assert 'name="break_glass_reason"' in html and "Commit anyway (break glass)" in html
    refused = client.post(f"{page}/commit", data={"break_glass_reason": "  "})
    assert refused.status_code == 409 and "break glass" in refused.text
    assert db.session.get(ChangeRequest, request.id).status == "open"
    assert not entries(calendar.EVENT_BREAK_GLASS)

    done = client.post(f"{page}/commit", data={"break_glass_reason": "Payment outage fix"})
    assert done.status_code == 303
    db.session.rollback()  # end this session's read snapshot: the request committed in another
    assert db.session.get(ChangeRequest, request.id).status == "committed"
    [glass] = entries(calendar.EVENT_BREAK_GLASS)
    assert "Payment outage fix" in glass.message and glass.actor_user_id == admin.id
