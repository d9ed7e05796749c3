"""Change requests: changes to an environment that needs approvals wait here until enough
members other than the requester approve them; then an editor commits them.

Two sources: a release pipeline's stage into such an environment (the engine opens the request
in the transition that would have applied the stage; the run waits "awaiting approval"), and a
person's manual toggle, value or override edit there.

Rules:
- An approval is bound to the exact changes it saw: a review row carries the request's
  `changes_hash`, and only reviews with the current hash count. The hash changes whenever the
  changes are recomputed (re-opened, or the flag drifted before a commit).
- Commit is manual (a button for editors and admins once approvals ≥ the environment's
  minimum); nothing commits by itself. A pipeline request commits through the engine's own
  code path (`transition.commit_approved`) and the run moves on.
- Every use case holds the writer lock (BEGIN IMMEDIATE on SQLite, the request's row lock on
  PostgreSQL) and status changes compare-and-set the request's `version` (and the run's), so
  two people clicking at once give two approvals and at most one commit.
"""

from typing import Any, cast

from sqlalchemy import func, select

from webapp import database
from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    ChangeRequest,
    ChangeRequestReview,
    Environment,
    PipelineRun,
    ReleasePipeline,
    Segment,
    StageExecution,
    User,
)
from webapp.models.changes import Change, PlannedChange, ShownChange
from webapp.services.actors import Actor
from webapp.services.change_requests import opening
from webapp.services.change_requests.opening import _describe
from webapp.services.errors import Conflict, Forbidden, Invalid, NotFound
from webapp.services.governance import audit
from webapp.services.platform import access, flag_changes
from webapp.services.runs import calendar, planning, transition
from webapp.services.runs.approvals import (
    APPROVED,
    COMMITTED,
    REJECTED,
    REOPENED,
    UPDATED,
    _audit_fields,
    _cas_request,
    _close,
    _feature_name,
    _hash,
    _notify,
    _notify_reviewers,
    approvals_needed,
    bare,
    with_diff,
)

# --- Reviews --------------------------------------------------------------------------------------

MAX_COMMENT = 2000


def approve(project_id: int, request_id: int, actor: Actor, *, seen_hash: str | None = None,
            comment: str = "") -> ChangeRequestReview:
    """Approve the request's current changes (`seen_hash`: the changes the reviewer looked at).

    Refuses: a request of another project (NotFound); viewers, the requester, or for a
    pipeline request who added the flag (Forbidden); a request that is not open, changes that
    differ from what the reviewer saw, a second review of the same changes (Conflict); a
    comment over 2000 characters (Invalid). Nothing commits by itself. Audits
    CHANGE_REQUEST_APPROVED.
    """
    return _review(project_id, request_id, actor, "approved", seen_hash, comment)


def reject(project_id: int, request_id: int, actor: Actor, *, seen_hash: str | None = None,
           comment: str = "") -> ChangeRequestReview:
    """Reject the request: it stops, and a pipeline run waiting for it is halted in the stage
    ("Change request #N rejected") until the request is re-opened or the flag removed.

    Refuses what `approve` refuses. Audits CHANGE_REQUEST_REJECTED (and the run's halt as
    RELEASE_PIPELINE_FEATURE_HALTED); notifies the requester.
    """
    return _review(project_id, request_id, actor, "rejected", seen_hash, comment)


def _review(project_id: int, request_id: int, actor: Actor, decision: str,
            seen_hash: str | None, comment: str) -> ChangeRequestReview:
    comment = (comment or "").strip()
    if len(comment) > MAX_COMMENT:
        raise Invalid("Comment too long.", {"comment": [f"At most {MAX_COMMENT} characters."]})
    request = _locked(project_id, request_id)
    user = _member(actor, project_id, "editor", "Only editors and admins review change requests.")
    if request.status != "open":
        raise Conflict(f"Change request #{request.id} is {request.status}; it takes no reviews.")
    if request.created_by_id == user.id:
        raise Forbidden("You asked for these changes: someone else has to review them."
                        if request.run_id is None else
                        "You added this flag to the pipeline: someone else has to review it.")
    if seen_hash is not None and seen_hash != request.changes_hash:
        raise Conflict("The changes were updated since you opened this page; review them again.")
    already = db.session.scalar(select(ChangeRequestReview.decision).where(
        ChangeRequestReview.change_request_id == request.id,
        ChangeRequestReview.user_id == user.id,
        ChangeRequestReview.changes_hash == request.changes_hash))
    if already is not None:
        raise Conflict(f"You already {already} these changes.")
    moment = clock_now()
    review = ChangeRequestReview(change_request_id=request.id, user_id=user.id, decision=decision,
                                 comment=comment, changes_hash=request.changes_hash,
                                 created_at=moment)
    db.session.add(review)
    db.session.flush()
    feature_name = _feature_name(request)
    said = f": {comment}" if comment else ""
    if decision == "approved":
        audit.record(actor, APPROVED, f"Change request #{request.id} approved by "
                                      f"{user.display_name}{said}",
                     **_audit_fields(request, feature_name), run_id=request.run_id,
                     after={"comment": comment, "approvals": _approvals(request),
                            "needed": approvals_needed(request.environment_id)})
    else:
        _cas_request(request, status="rejected", updated_at=moment)
        audit.record(actor, REJECTED, f"Change request #{request.id} rejected by "
                                      f"{user.display_name}{said}",
                     **_audit_fields(request, feature_name), run_id=request.run_id,
                     after={"comment": comment})
        if request.run_id is not None:
            _halt_run(request, actor, feature_name)
        _notify(request, [request.created_by_id], "change_request_rejected",
                f"Change request #{request.id} ({request.title}) was rejected by "
                f"{user.display_name}{said}", key=f"v{request.version}:rejected")
    db.session.commit()
    return review


# --- Commit ---------------------------------------------------------------------------------------


def commit(project_id: int, request_id: int, actor: Actor,
           break_glass_reason: str | None = None) -> planning.Bell | None:
    """Apply the request's changes and mark it committed. A pipeline request applies through
    the engine's stage code path (entries FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE naming the
    request) and moves the run on; returns the run's bell to ring (the caller enqueues it).

    Refuses: a request of another project (NotFound); viewers (Forbidden); a request that is
    not open, fewer current approvals than the environment needs, a flag that a pipeline took
    over meanwhile (Conflict). When the flag changed since the request was opened, the diff is
    recomputed (old approvals no longer count; audited CHANGE_REQUEST_UPDATED) and the commit
    refused (Conflict). While the environment is frozen or the line stopped, only an admin
    giving `break_glass_reason` commits (calendar.check_commit: Conflict otherwise; audited
    CHANGE_REQUEST_BREAK_GLASS). Audits CHANGE_REQUEST_COMMITTED.
    """
    request = _locked(project_id, request_id)
    user = _member(actor, project_id, "editor", "Only editors and admins commit change requests.")
    if request.status != "open":
        raise Conflict(f"Change request #{request.id} is {request.status}; it cannot be committed.")
    needed = approvals_needed(request.environment_id)
    have = _approvals(request)
    if have < needed:
        raise Conflict(f"Change request #{request.id} has {have} of the {needed} approval"
                       f"{'s' if needed != 1 else ''} it needs.")
    calendar.check_commit(request.environment_id, actor, break_glass_reason,
                          request_id=request.id, project_id=project_id)
    changes = [bare(c) for c in request.changes]
    if request.run_id is None:
        flag_changes.refuse_if_in_flight(request.feature_id)
    fresh = with_diff(changes)
    if fresh != request.changes:
        _refresh(request, fresh, actor)
        raise Conflict("The flag changed since this request was opened: the diff is updated and "
                       "needs approval again.")
    moment = clock_now()
    feature_name = _feature_name(request)
    bell = None
    if request.run_id is not None:
        # A pipeline's request holds what its stage planned.
        planned = cast("list[PlannedChange]", changes)
        try:
            bell = transition.commit_approved(request.run_id, request.stage_id, planned,
                                              change_request_id=request.id, now=moment)
        except planning.StageFailed as error:
            db.session.rollback()
            raise Conflict(str(error)) from None
    else:
        environment = db.session.get_one(Environment, request.environment_id)
        # A person's request holds flag changes (a rollout only comes from a stage).
        for change in cast("list[Change]", changes):
            _apply_manual(request, change, actor, feature_name, environment)
    _cas_request(request, status="committed", committed_at=moment, committed_by_id=user.id,
                 updated_at=moment)
    audit.record(actor, COMMITTED, f"Change request #{request.id} committed by "
                                   f"{user.display_name}: {request.title}",
                 **_audit_fields(request, feature_name), run_id=request.run_id,
                 after={"approvals": have, "needed": needed})
    _notify(request, [request.created_by_id], "change_request_committed",
            f"Change request #{request.id} ({request.title}) was committed by "
            f"{user.display_name}.", key="committed", skip=user.id)
    db.session.commit()
    return bell


def _apply_manual(request: ChangeRequest, change: Change, actor: Actor,
                  feature_name: str, environment: Environment) -> None:
    segment_name = ""
    if change["kind"] != "state":
        segment = db.session.get(Segment, change["segment_id"])
        segment_name = segment.name if segment else f"#{change['segment_id']}"
    if change["kind"] == "state":
        event = "FEATURE_STATE_UPDATED"
        message = f"Flag {feature_name} {_describe(change)} in {environment.name}"
    elif change["kind"] == "override":
        verb = "updated" if flag_changes.read_target(change) is not None else "created"
        event = f"SEGMENT_OVERRIDE_{verb.upper()}"
        message = (f"Override of {feature_name} for segment {segment_name} {verb} in "
                   f"{environment.name}")
    else:
        event = "SEGMENT_OVERRIDE_DELETED"
        message = (f"Override of {feature_name} for segment {segment_name} removed in "
                   f"{environment.name}")
    flag_changes.apply_change(
        change, actor, project_id=request.project_id, event_type=event,
        message=f"{message} (change request #{request.id})", object_label=feature_name,
        change_request_id=request.id)


# --- Re-open and close ----------------------------------------------------------------------------


def reopen(project_id: int, request_id: int, actor: Actor) -> None:
    """Open a rejected request again, with its diff recomputed and earlier reviews void (a new
    changes hash). A pipeline run halted by the rejection waits for approval again.

    Refuses: a request of another project (NotFound); viewers (Forbidden); a request that is not
    rejected, or whose flag left the pipeline or was re-tried into a new request (Conflict).
    Audits CHANGE_REQUEST_REOPENED; notifies reviewers.
    """
    request = _locked(project_id, request_id)
    _member(actor, project_id, "editor", "Only editors and admins re-open change requests.")
    if request.status != "rejected":
        raise Conflict(f"Only a rejected change request can be re-opened (#{request.id} is "
                       f"{request.status}).")
    moment = clock_now()
    if request.run_id is not None:
        run = db.session.get(PipelineRun, request.run_id)
        waiting_for = db.session.scalar(select(StageExecution.change_request_id).where(
            StageExecution.run_id == request.run_id, StageExecution.stage_id == request.stage_id))
        if (run is None or run.ended_at is not None or run.status != "halted"
                or run.stage_id != request.stage_id or waiting_for != request.id):
            raise Conflict("The flag is no longer halted by this request; it cannot be re-opened.")
        _cas_run(run, status="awaiting_approval", paused_status=None, last_error=None,
                 attempts=0)
    fresh = with_diff([bare(c) for c in request.changes])
    _cas_request(request, status="open", changes=fresh,
                 changes_hash=_hash(fresh, request.version + 1), updated_at=moment)
    feature_name = _feature_name(request)
    audit.record(actor, REOPENED, f"Change request #{request.id} re-opened: {request.title}",
                 **_audit_fields(request, feature_name), run_id=request.run_id,
                 after={"changes": fresh})
    _notify_reviewers(request, db.session.get_one(Environment, request.environment_id),
                      feature_name, round_=request.version + 1)
    db.session.commit()


def close(project_id: int, request_id: int, actor: Actor) -> None:
    """Withdraw an open request made by a person (nothing is applied).

    Refuses: a request of another project (NotFound); viewers (Forbidden); a request that is
    not open, or a pipeline's request (remove the flag from the pipeline or reject it instead)
    (Conflict). Audits CHANGE_REQUEST_CLOSED.
    """
    request = _locked(project_id, request_id)
    _member(actor, project_id, "editor", "Only editors and admins close change requests.")
    if request.status != "open":
        raise Conflict(f"Change request #{request.id} is {request.status}; it cannot be closed.")
    if request.run_id is not None:
        raise Conflict("A release pipeline waits for this request: reject it, or remove the flag "
                       "from the pipeline.")
    _close(request, actor, "withdrawn")
    db.session.commit()


# --- Helpers of the use cases ---------------------------------------------------------------------


def _locked(project_id: int, request_id: int) -> ChangeRequest:
    """The project's request, read under the writer lock (its row lock on PostgreSQL, taken
    after its run's: runs before change requests, the order every unit of work keeps)."""
    planning.start_writing()
    query = select(ChangeRequest).where(ChangeRequest.id == request_id)
    if db.engine.dialect.name == "postgresql":
        run_id = db.session.scalar(select(ChangeRequest.run_id)
                                   .where(ChangeRequest.id == request_id))
        database.lock_rows(db.session(), PipelineRun, [run_id] if run_id else [])
        query = query.with_for_update(of=ChangeRequest)
    request = db.session.scalar(query.execution_options(populate_existing=True))
    if request is None or request.project_id != project_id:
        raise NotFound("Change request not found.")
    return request


def _member(actor: Actor, project_id: int, needs: str, refusal: str) -> User:
    user = db.session.get(User, actor.user_id) if actor.user_id is not None else None
    if user is None:
        raise Forbidden(opening.NOT_A_PERSON.format(act="review or commit"))
    role = access.role_in(user, project_id)
    if role is None:
        raise NotFound("Project not found.")
    if not access.can(role, needs):
        raise Forbidden(refusal)
    return user


def _cas_run(run: PipelineRun, **values_: Any) -> None:
    if not database.compare_and_set(PipelineRun, run.id, run.version, **values_):
        db.session.rollback()
        raise Conflict("The flag moved on meanwhile; look again.")


def _halt_run(request: ChangeRequest, actor: Actor, feature_name: str) -> None:
    run = db.session.get(PipelineRun, request.run_id)
    if (run is None or run.ended_at is not None or run.status != "awaiting_approval"
            or run.stage_id != request.stage_id):
        return
    error = f"Change request #{request.id} rejected"
    _cas_run(run, status="halted", paused_status="awaiting_approval", last_error=error,
             due_at=None, lease_until=None)
    pipeline_name = db.session.scalar(select(ReleasePipeline.name)
                                      .where(ReleasePipeline.id == run.pipeline_id))
    audit.record(actor, "RELEASE_PIPELINE_FEATURE_HALTED",
                 f"{feature_name} halted in pipeline {pipeline_name}: {error}",
                 project_id=run.project_id, object_type="feature", object_id=run.feature_id,
                 object_label=feature_name, pipeline_id=run.pipeline_id,
                 feature_id=run.feature_id, run_id=run.id, change_request_id=request.id)


def _refresh(request: ChangeRequest, fresh: list[ShownChange], actor: Actor) -> None:
    """Store the recomputed diff with a new hash (earlier approvals stop counting), on its own."""
    _cas_request(request, changes=fresh, changes_hash=_hash(fresh, request.version + 1),
                 updated_at=clock_now())
    audit.record(actor, UPDATED, f"Change request #{request.id} updated: the flag changed since "
                                 "it was opened, so its diff was recomputed",
                 **_audit_fields(request, _feature_name(request)), run_id=request.run_id,
                 before={"changes": request.changes}, after={"changes": fresh})
    db.session.commit()


def _approvals(request: ChangeRequest) -> int:
    """Approvals of the request's current changes."""
    return db.session.scalar(select(func.count()).select_from(ChangeRequestReview).where(
        ChangeRequestReview.change_request_id == request.id,
        ChangeRequestReview.decision == "approved",
        ChangeRequestReview.changes_hash == request.changes_hash)) or 0
