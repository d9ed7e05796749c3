"""Change requests as services: opened by the engine or by hand, reviewed, committed, rejected,
re-opened, closed; every refusal changes nothing."""

import pytest
from sqlalchemy import select

from webapp.extensions import db
from webapp.models import (
    ChangeRequestReview,
    Notification,
    OutboxMessage,
    StageExecution,
)
from webapp.services.actors import SYSTEM, Actor
from webapp.services.change_requests import opening, workflow
from webapp.services.errors import Conflict, Forbidden, Invalid, NotFound
from webapp.services.pages import change_request_pages
from webapp.services.platform import flag_changes
from webapp.services.runs import approvals, controls, sweep

from .conftest import audit_count, entries, request_of, run_of, state


def you(user):
    return Actor.for_user(user)


def test_a_stage_into_production_opens_a_request_instead_of_changing_the_flag(
        to_production, make, project, editor, reviewer, admin, viewer, envs, pipeline):
    flag = make.feature(project, "checkout")
    request = to_production(flag)

    assert state(flag, envs["Development"]) == (True, None)
    assert state(flag, envs["Production"]) == (False, None)
    run = run_of(flag)
    assert (run.status, run.stage_position, run.due_at) == ("awaiting_approval", 1, None)
    assert request.status == "open"
    assert request.title == "checkout → Prod (Release)"
    assert (request.run_id, request.stage_id) == (run.id, pipeline.stages[1].id)
    assert request.created_by_id == editor.id  # who added the flag
    [change] = request.changes
    assert change["kind"] == "state" and change["enabled"] is True
    assert change["environment_id"] == envs["Production"].id
    assert change["before"] == {"enabled": False, "value": None}
    assert change["after"] == {"enabled": True, "value": None}
    execution = db.session.scalar(select(StageExecution).where(
        StageExecution.run_id == run.id, StageExecution.stage_id == pipeline.stages[1].id))
    assert execution.change_request_id == request.id
    [opened] = entries(approvals.OPENED)
    assert opened.actor_label == "Release pipeline Release"
    assert opened.change_request_id == request.id and opened.feature_id == flag.id
    # Reviewers (editors and admins but the one who added the flag) are told; viewers are not.
    told = set(db.session.scalars(select(Notification.user_id).where(
        Notification.kind == "change_request_waiting")))
    assert told == {reviewer.id, admin.id}
    assert db.session.scalar(select(OutboxMessage.id)) is None  # no mail configured


def test_a_batch_of_flags_each_gets_its_own_request(to_production, make, project):
    flags = [make.feature(project) for _ in range(3)]
    requests = to_production(*flags)
    assert [r.feature_id for r in requests] == [f.id for f in flags]
    assert {run_of(f).status for f in flags} == {"awaiting_approval"}
    assert len(entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE")) == 3  # Development only


def test_approve_then_commit_applies_through_the_engine_and_launches(
        to_production, make, project, editor, reviewer, envs):
    flag = make.feature(project, "checkout")
    request = to_production(flag)

    workflow.approve(project.id, request.id, you(reviewer), seen_hash=request.changes_hash,
               comment="Looks right")
    assert state(flag, envs["Production"]) == (False, None)  # nothing commits by itself
    bell = workflow.commit(project.id, request.id, you(editor))

    assert bell is None  # the last stage: launched
    assert state(flag, envs["Production"]) == (True, None)
    run = run_of(flag)
    assert (run.status, run.end_reason) == ("launched", "launched")
    request = request_of(flag)
    assert (request.status, request.committed_by_id) == ("committed", editor.id)
    applied = entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE",
                      environment_id=envs["Production"].id)
    assert [e.change_request_id for e in applied] == [request.id]
    assert applied[0].actor_label == "Release pipeline Release"
    assert len(entries(approvals.APPROVED, change_request_id=request.id)) == 1
    assert len(entries(approvals.COMMITTED, change_request_id=request.id)) == 1
    assert len(entries("RELEASE_PIPELINE_FEATURE_LAUNCHED")) == 1


def test_a_commit_in_a_middle_stage_returns_the_bell_of_the_next_one(
        clock, make, project, editor, reviewer, envs):
    from .conftest import build_pipeline

    pipeline = build_pipeline(project, editor, envs, [
        ("Prod", "Production", [{"type": "TOGGLE_FEATURE", "enabled": True}]),
        ("Staging", "Staging", [{"type": "TOGGLE_FEATURE", "enabled": True}]),
    ], name="Prod first")
    flag = make.feature(project)
    bell = controls.add_flag(project, pipeline.id, flag.id, you(editor))
    sweep.advance(bell.run_id, bell.version)
    request = request_of(flag)
    workflow.approve(project.id, request.id, you(reviewer))
    bell = workflow.commit(project.id, request.id, you(reviewer))

    assert bell is not None and bell.run_id == run_of(flag).id
    assert run_of(flag).status == "waiting" and run_of(flag).stage_position == 1
    sweep.advance(bell.run_id, bell.version)
    assert state(flag, envs["Staging"]) == (True, None)
    assert run_of(flag).status == "launched"


@pytest.fixture
def other_project_user(make):
    other = make.project("Other")
    return make.user(project=other, role="admin")


@pytest.mark.parametrize("case, error", [
    ("own approval", Forbidden),
    ("viewer approves", Forbidden),
    ("approve twice", Conflict),
    ("commit without approvals", Conflict),
    ("commit a rejected request", Conflict),
    ("commit a closed request", Conflict),
    ("approve a rejected request", Conflict),
    ("another project's request", NotFound),
    ("changes seen differ", Conflict),
    ("comment too long", Invalid),
])
def test_refusals_change_nothing(case, error, to_production, make, project, editor, reviewer,
                                 viewer, admin, envs):
    flag = make.feature(project)
    request = to_production(flag)
    other = make.project("Elsewhere")
    stranger = make.user(project=other, role="admin")
    if case == "approve twice":
        workflow.approve(project.id, request.id, you(reviewer))
    if case in ("commit a rejected request", "approve a rejected request"):
        workflow.reject(project.id, request.id, you(admin))
    if case == "commit a closed request":
        workflow.approve(project.id, request.id, you(reviewer))
        controls.remove(project, run_of(flag).id, you(editor))
    before = (audit_count(), request_of(flag).status, request_of(flag).version,
              db.session.scalar(select(ChangeRequestReview.id).order_by(
                  ChangeRequestReview.id.desc()).limit(1)), run_of(flag).version)

    attempts = {
        "own approval": lambda: workflow.approve(project.id, request.id, you(editor)),
        "viewer approves": lambda: workflow.approve(project.id, request.id, you(viewer)),
        "approve twice": lambda: workflow.approve(project.id, request.id, you(reviewer)),
        "commit without approvals": lambda: workflow.commit(project.id, request.id, you(reviewer)),
        "commit a rejected request": lambda: workflow.commit(project.id, request.id, you(reviewer)),
        "commit a closed request": lambda: workflow.commit(project.id, request.id, you(reviewer)),
        "approve a rejected request":
            lambda: workflow.approve(project.id, request.id, you(reviewer)),
        "another project's request": lambda: workflow.approve(other.id, request.id, you(stranger)),
        "changes seen differ": lambda: workflow.approve(project.id, request.id, you(reviewer),
                                                  seen_hash="0" * 64),
        "comment too long": lambda: workflow.approve(project.id, request.id, you(reviewer),
                                               comment="x" * 2001),
    }
    with pytest.raises(error) as raised:
        attempts[case]()
    assert raised.value.message
    db.session.rollback()
    after = (audit_count(), request_of(flag).status, request_of(flag).version,
             db.session.scalar(select(ChangeRequestReview.id).order_by(
                 ChangeRequestReview.id.desc()).limit(1)), run_of(flag).version)
    assert after == before
    assert state(flag, envs["Production"]) == (False, None)


def test_reject_halts_the_run_until_the_request_is_reopened(
        to_production, make, project, editor, reviewer, admin, envs):
    flag = make.feature(project)
    request = to_production(flag)
    workflow.reject(project.id, request.id, you(reviewer), comment="Not on a Friday")

    run = run_of(flag)
    assert run.status == "halted"
    assert run.last_error == f"Change request #{request.id} rejected"
    assert request_of(flag).status == "rejected"
    assert sweep.drain().moved == 0  # a halted run does not move
    assert len(entries(approvals.REJECTED)) == 1
    [told] = db.session.scalars(select(Notification).where(
        Notification.kind == "change_request_rejected")).all()
    assert told.user_id == editor.id and "Not on a Friday" in told.message

    old_hash = request_of(flag).changes_hash
    workflow.reopen(project.id, request.id, you(editor))
    request = request_of(flag)
    assert request.status == "open" and request.changes_hash != old_hash
    assert run_of(flag).status == "awaiting_approval" and run_of(flag).last_error is None
    # The earlier rejection is of other changes: the same reviewer may now approve.
    workflow.approve(project.id, request.id, you(reviewer), seen_hash=request.changes_hash)
    workflow.commit(project.id, request.id, you(admin))
    assert state(flag, envs["Production"]) == (True, None)
    assert run_of(flag).status == "launched"
    assert len(entries(approvals.REOPENED)) == 1


def test_reopening_refused_once_the_flag_left_the_pipeline(to_production, make, project, editor,
                                                          reviewer):
    flag = make.feature(project)
    request = to_production(flag)
    workflow.reject(project.id, request.id, you(reviewer))
    controls.remove(project, run_of(flag).id, you(editor))
    with pytest.raises(Conflict):
        workflow.reopen(project.id, request.id, you(editor))


@pytest.mark.parametrize("how", ["remove", "rollback"])
def test_removing_or_rolling_back_the_flag_closes_its_open_request(how, to_production, make,
                                                                   project, editor, envs):
    flag = make.feature(project)
    request = to_production(flag)
    getattr(controls, how)(project, run_of(flag).id, you(editor))
    assert request_of(flag).status == "closed"
    [closed] = entries(approvals.CLOSED)
    assert closed.change_request_id == request.id
    assert state(flag, envs["Production"]) == (False, None)


def test_an_approval_of_earlier_changes_no_longer_counts(clock, make, project, editor, reviewer,
                                                         admin, envs):
    flag = make.feature(project)
    request = opening.set_state(flag, envs["Production"].id, you(editor), enabled=True)
    assert request is not None
    workflow.approve(project.id, request.id, you(reviewer), seen_hash=request.changes_hash)
    # The flag changes by another road meanwhile: the diff the reviewer saw is not true anymore.
    flag_changes.apply_change({"kind": "state", "environment_id": envs["Production"].id,
                               "feature_id": flag.id, "value": None, "enabled": False},
                              SYSTEM, project_id=project.id, event_type="FEATURE_STATE_UPDATED",
                              message="x")
    flag_changes.apply_change({"kind": "state", "environment_id": envs["Production"].id,
                               "feature_id": flag.id, "enabled": True},
                              SYSTEM, project_id=project.id, event_type="FEATURE_STATE_UPDATED",
                              message="on by another road")
    db.session.commit()
    with pytest.raises(Conflict, match="changed since"):
        workflow.commit(project.id, request.id, you(admin))
    request = request_of(flag)
    assert request.changes[0]["before"] == {"enabled": True, "value": None}
    assert change_request_pages.get_detail(project.id, request.id).approvals == 0
    with pytest.raises(Conflict):
        workflow.commit(project.id, request.id, you(admin))
    workflow.approve(project.id, request.id, you(reviewer), seen_hash=request.changes_hash)
    workflow.commit(project.id, request.id, you(admin))
    assert request_of(flag).status == "committed"


def test_manual_changes_in_a_gated_environment_open_requests(clock, make, project, editor,
                                                             reviewer, envs):
    flag = make.feature(project, "banner", value_type="string", default_value="old")
    other = make.feature(project, "title", value_type="string", default_value="old")
    segment = make.segment(project, "Pros")
    prod = envs["Production"].id

    toggled = opening.set_state(flag, prod, you(editor), enabled=True)
    valued = opening.set_state(other, prod, you(editor), raw_value="new")
    override = opening.save_override(flag, prod, segment.id, you(editor), enabled=True,
                                     raw_value="pro")
    assert state(flag, envs["Production"]) == (False, "old")
    assert state(other, envs["Production"]) == (False, "old")
    assert [r.status for r in (toggled, valued, override)] == ["open"] * 3
    assert valued.changes[0]["before"] == {"enabled": False, "value": "old"}
    assert valued.changes[0]["after"] == {"enabled": False, "value": "new"}
    assert override.changes[0]["before"] is None
    assert len(entries(approvals.OPENED)) == 3
    # Elsewhere changes apply at once, as before.
    assert opening.set_state(flag, envs["Staging"].id, you(editor), enabled=True) is None
    assert state(flag, envs["Staging"]) == (True, "old")

    for request in (toggled, valued, override):
        workflow.approve(project.id, request.id, you(reviewer))
        workflow.commit(project.id, request.id, you(reviewer))
    assert state(flag, envs["Production"]) == (True, "old")
    assert state(other, envs["Production"]) == (False, "new")
    applied = entries("FEATURE_STATE_UPDATED", environment_id=prod)
    assert [e.change_request_id for e in applied] == [toggled.id, valued.id]
    assert "(change request #" in applied[0].message
    [created] = entries("SEGMENT_OVERRIDE_CREATED")
    assert created.change_request_id == override.id and created.after["value"] == "pro"

    removal = opening.remove_override(flag, prod, segment.id, you(editor))
    workflow.close(project.id, removal.id, you(editor))
    assert request_of(flag).status == "closed"
    assert len(entries(approvals.CLOSED)) == 1


@pytest.mark.parametrize("kwargs, error", [
    ({"raw_value": "12x"}, Invalid),
    ({"enabled": False}, Invalid),  # already off: nothing would change
])
def test_manual_requests_refuse_bad_input(kwargs, error, make, project, editor, envs):
    flag = make.feature(project, value_type="integer")
    before = audit_count()
    with pytest.raises(error):
        opening.set_state(flag, envs["Production"].id, you(editor), **kwargs)
    db.session.rollback()
    assert audit_count() == before


def test_a_flag_in_a_pipeline_takes_no_manual_request(to_production, make, project, editor, envs):
    flag = make.feature(project)
    to_production(flag)
    with pytest.raises(Conflict, match="release pipeline"):
        opening.set_state(flag, envs["Production"].id, you(editor), enabled=False)
