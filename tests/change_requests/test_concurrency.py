"""Two approvers clicking at the same moment: two approvals, at most one commit, the flag's
changes applied once. Real threads, each with its own app context and database session."""

import threading

from sqlalchemy import func, select

from webapp.extensions import db
from webapp.models import ChangeRequestReview
from webapp.services.actors import Actor
from webapp.services.change_requests import workflow
from webapp.services.errors import Conflict
from webapp.services.runs import approvals

from .conftest import entries, request_of, run_of, state


def test_two_approvers_at_once_give_two_approvals_and_one_commit(app, to_production, make, project,
                                                                 reviewer, admin, envs):
    flag = make.feature(project, "checkout")
    request = to_production(flag)
    request_id, project_id = request.id, project.id
    people = [Actor.for_user(reviewer), Actor.for_user(admin)]
    db.session.rollback()
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[str] = []

    def approver(actor):
        try:
            with app.app_context():
                barrier.wait()
                workflow.approve(project_id, request_id, actor)
                barrier.wait()
                try:
                    workflow.commit(project_id, request_id, actor)
                    outcomes.append("committed")
                except Conflict as refused:
                    outcomes.append(f"refused: {refused.message}")
                db.session.remove()
        except Exception:  # pragma: no cover - reported below
            import traceback

            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=approver, args=(p,)) for p in people]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == [], errors[0]
    assert sorted(outcomes)[0] == "committed"
    assert outcomes.count("committed") == 1
    assert "is committed" in sorted(outcomes)[1]
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(ChangeRequestReview)) == 2
    assert len(entries(approvals.APPROVED)) == 2
    assert len(entries(approvals.COMMITTED)) == 1
    assert len(entries("FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE",
                       environment_id=envs["Production"].id)) == 1
    assert request_of(flag).status == "committed"
    assert run_of(flag).status == "launched"
    assert state(flag, envs["Production"]) == (True, None)
