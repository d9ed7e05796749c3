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
  code path (`engine.commit_approved`) and the run moves on.
- Every use case holds the writer lock (BEGIN IMMEDIATE on SQLite, the request's row lock on
  PostgreSQL) and status changes compare-and-set the request's `version` (and the run's), so
  two people clicking at once give two approvals and at most one commit.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import selectinload

from webapp import database
from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    ChangeRequest,
    ChangeRequestReview,
    Environment,
    Feature,
    Membership,
    Notification,
    OutboxMessage,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    Segment,
    StageExecution,
    User,
)
from webapp.services import access, audit, engine, flag_changes, notifications, values
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Forbidden, Invalid, NotFound

OPENED = "CHANGE_REQUEST_OPENED"
APPROVED = "CHANGE_REQUEST_APPROVED"
REJECTED = "CHANGE_REQUEST_REJECTED"
COMMITTED = "CHANGE_REQUEST_COMMITTED"
CLOSED = "CHANGE_REQUEST_CLOSED"
REOPENED = "CHANGE_REQUEST_REOPENED"
UPDATED = "CHANGE_REQUEST_UPDATED"
EVENT_TYPES = (OPENED, APPROVED, REJECTED, COMMITTED, CLOSED, REOPENED, UPDATED)
STATUSES = ("open", "committed", "rejected", "closed")
# An organisation API key acts for no one: change requests name the people who asked,
# reviewed and committed.
NOT_A_PERSON = ("Change requests are a person's act and an organisation API key is not a "
                "person: {act} with a personal token (Authorization: Token <token>).")
MAX_COMMENT = 2000
_UNSET: Any = object()
# Keys a stored change carries for display only; the applied change is the rest.
_SHOWN = ("before", "after")


def approvals_needed(environment_id: int) -> int:
    """How many approvals a change in the environment needs (0: changes apply at once)."""
    return db.session.scalar(select(Environment.minimum_change_request_approvals)
                             .where(Environment.id == environment_id)) or 0


def link(project_id: int, request_id: int) -> str:
    return f"/projects/{project_id}/change-requests/{request_id}"


# --- The exact diff -------------------------------------------------------------------------------


def bare(change: dict[str, Any]) -> dict[str, Any]:
    """The change to apply, without its before/after."""
    return {k: v for k, v in change.items() if k not in _SHOWN}


def with_diff(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The changes, each with `before` and `after` as they would be if applied now, in order
    (a later change to the same target starts from the earlier one's result)."""
    current: dict[tuple, dict[str, Any] | None] = {}
    out = []
    for change in map(bare, changes):
        kind = change["kind"]
        if kind == "rollout":
            after = {"percent": change["percent"], "enabled": change["enabled"]}
            if "value" in change:
                after["value"] = change["value"]
            out.append({**change, "before": None, "after": after})
            continue
        target_kind = "state" if kind == "state" else "override"
        key = (target_kind, change["feature_id"], change["environment_id"],
               change.get("segment_id"))
        if key not in current:
            current[key] = flag_changes.read_target({**change, "kind": target_kind})
        before = current[key]
        if kind == "remove_override":
            after = None
        else:
            if before is not None:
                after = dict(before)
            else:  # a new override starts from the flag's state at that point (flag_changes)
                state = current.get(("state", change["feature_id"], change["environment_id"],
                                     None)) or flag_changes.state_now(change["feature_id"],
                                                                      change["environment_id"])
                after = {"enabled": state["enabled"], "value": state["value"]}
            if kind == "override" and change.get("priority") is not None:
                after["priority"] = change["priority"]
            if "enabled" in change:
                after["enabled"] = bool(change["enabled"])
            if "value" in change:
                after["value"] = change["value"]
        current[key] = after
        out.append({**change, "before": before, "after": after})
    return out


def _hash(changes: list[dict[str, Any]], version: int) -> str:
    # The version salts the hash: re-opening a request (same changes) still voids old reviews.
    text = json.dumps(changes, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"v{version}:{text}".encode()).hexdigest()


# --- Opening --------------------------------------------------------------------------------------


def open_for_stage(*, run: PipelineRun, pipeline_name: str, stage_id: int, stage_name: str,
                   environment_id: int, feature_name: str, changes: list[dict[str, Any]],
                   now: datetime) -> ChangeRequest:
    """Open a change request holding exactly the stage's planned `changes` (each with its
    before/after), in the engine's transition (the caller commits, with the run's
    compare-and-set to "awaiting_approval"). The requester is who added the flag.

    Refuses nothing. Audits CHANGE_REQUEST_OPENED (actor: the pipeline); notifies reviewers.
    """
    environment = db.session.get(Environment, environment_id)
    shown = with_diff(changes)
    request = ChangeRequest(
        project_id=run.project_id, environment_id=environment_id, feature_id=run.feature_id,
        title=f"{feature_name} → {stage_name} ({pipeline_name})"[:500],
        description=f"Release pipeline {pipeline_name} reached stage {stage_name} in "
                    f"{environment.name}.",
        status="open", changes=shown, changes_hash=_hash(shown, 1), created_by_id=run.added_by_id,
        run_id=run.id, stage_id=stage_id, version=1, created_at=now, updated_at=now)
    db.session.add(request)
    db.session.flush()
    db.session.execute(update(StageExecution)
                       .where(StageExecution.run_id == run.id, StageExecution.stage_id == stage_id)
                       .values(change_request_id=request.id))
    audit.record(Actor.for_pipeline(pipeline_name), OPENED,
                 f"Change request #{request.id} opened: {request.title}",
                 **_audit_fields(request, feature_name), pipeline_id=run.pipeline_id,
                 run_id=run.id, after={"changes": shown},
                 idempotency_key=f"change-request:{request.id}:opened")
    _notify_reviewers(request, environment, feature_name)
    return request


def set_state(feature: Feature, environment_id: int, actor: Actor, *, enabled: bool | None = None,
              raw_value: Any = _UNSET) -> ChangeRequest | None:
    """A person's toggle or value edit in one environment: applied at once
    (`flags.set_state`) when the environment needs no approvals, otherwise a change request
    holding it (returned).

    Refuses what `flags.set_state` refuses. Audits CHANGE_REQUEST_OPENED; notifies reviewers.
    """
    environment = _environment_of(feature.project_id, environment_id)
    if environment.minimum_change_request_approvals <= 0:
        from webapp.services import flags

        kwargs = {} if raw_value is _UNSET else {"raw_value": raw_value}
        flags.set_state(feature, environment_id, actor, enabled=enabled, **kwargs)
        return None
    change: dict[str, Any] = {"kind": "state", "environment_id": environment.id,
                              "feature_id": feature.id}
    if enabled is not None:
        change["enabled"] = bool(enabled)
    if raw_value is not _UNSET:
        change["value"] = values.parse(feature.value_type, raw_value)
    return open_manual(feature, environment, [change], actor)


def save_override(feature: Feature, environment_id: int, segment_id: int | None, actor: Actor, *,
                  enabled: bool, raw_value: Any = None, priority: Any = None,
                  must_exist: bool = False) -> ChangeRequest | None:
    """A person's new or edited segment override: applied at once (`flags.save_override`) when
    the environment needs no approvals, otherwise a change request holding it (returned).

    Refuses what `flags.save_override` refuses. Audits CHANGE_REQUEST_OPENED.
    """
    environment = _environment_of(feature.project_id, environment_id)
    if environment.minimum_change_request_approvals <= 0:
        from webapp.services import flags

        flags.save_override(feature, environment_id, segment_id, actor, enabled=enabled,
                            raw_value=raw_value, priority=priority, must_exist=must_exist)
        return None
    segment = db.session.get(Segment, segment_id) if segment_id is not None else None
    if segment is None or segment.project_id != feature.project_id or segment.is_system:
        raise Invalid("Unknown segment.",
                      {"segment_id": ["Choose one of this project's segments."]})
    errors: dict[str, list[str]] = {}
    value = None
    try:
        value = values.parse(feature.value_type, raw_value)
    except Invalid as error:
        errors.update(error.field_errors)
    parsed_priority = _priority(priority, errors)
    if errors:
        raise Invalid("Check the override.", errors)
    change = {"kind": "override", "environment_id": environment.id, "feature_id": feature.id,
              "segment_id": segment.id, "enabled": bool(enabled), "value": value,
              "priority": parsed_priority}
    exists = flag_changes.read_target(change) is not None
    if must_exist and not exists:
        raise NotFound("Override not found.")
    if not must_exist and exists:
        raise Invalid("Override exists.", {"segment_id": [
            f"{segment.name} already has an override in {environment.name}; edit it below."]})
    return open_manual(feature, environment, [change], actor)


def remove_override(feature: Feature, environment_id: int, segment_id: int, actor: Actor
                    ) -> ChangeRequest | None:
    """A person's override removal: applied at once (`flags.remove_override`) when the
    environment needs no approvals, otherwise a change request holding it (returned).

    Refuses what `flags.remove_override` refuses. Audits CHANGE_REQUEST_OPENED.
    """
    environment = _environment_of(feature.project_id, environment_id)
    if environment.minimum_change_request_approvals <= 0:
        from webapp.services import flags

        flags.remove_override(feature, environment_id, segment_id, actor)
        return None
    change = {"kind": "remove_override", "environment_id": environment.id,
              "feature_id": feature.id, "segment_id": segment_id}
    if flag_changes.read_target(change) is None:
        raise NotFound("Override not found.")
    return open_manual(feature, environment, [change], actor)


def open_manual(feature: Feature, environment: Environment, changes: list[dict[str, Any]],
                actor: Actor, *, title: str | None = None, description: str = "") -> ChangeRequest:
    """Open a change request for a person's `changes` (flag_changes change dicts) to one flag
    in one environment that needs approvals.

    Refuses a flag a release pipeline owns (Conflict), an environment or flag of another project
    (NotFound), no changes, changes that would change nothing (Invalid), and API keys without a
    user (Forbidden). Audits CHANGE_REQUEST_OPENED; notifies reviewers.
    """
    if actor.user_id is None:
        raise Forbidden(NOT_A_PERSON.format(act="ask for changes"))
    if environment.project_id != feature.project_id or any(
            c["feature_id"] != feature.id or c["environment_id"] != environment.id
            for c in changes):
        raise NotFound("Environment not found.")
    engine.start_writing()
    flag_changes.refuse_if_in_flight(feature.id)
    shown = with_diff(changes)
    if not shown:
        raise Invalid("Nothing to change.", {"form": ["Choose a change."]})
    if all(c["before"] == c["after"] for c in shown):
        raise Invalid("Nothing would change.",
                      {"form": [f"{feature.name} is already like this in {environment.name}."]})
    moment = clock_now()
    request = ChangeRequest(
        project_id=feature.project_id, environment_id=environment.id, feature_id=feature.id,
        title=(title or f"{feature.name}: {_summary(shown, feature)} in {environment.name}")[:500],
        description=description, status="open", changes=shown, changes_hash=_hash(shown, 1),
        created_by_id=actor.user_id, version=1, created_at=moment, updated_at=moment)
    db.session.add(request)
    db.session.flush()
    audit.record(actor, OPENED, f"Change request #{request.id} opened: {request.title}",
                 **_audit_fields(request, feature.name), after={"changes": shown})
    _notify_reviewers(request, environment, feature.name)
    db.session.commit()
    return request


# --- Reviews --------------------------------------------------------------------------------------


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


def commit(project_id: int, request_id: int, actor: Actor) -> engine.Bell | None:
    """Apply the request's changes and mark it committed. A pipeline request applies through
    the engine's stage code path (entries FEATURE_STATE_UPDATED_BY_RELEASE_PIPELINE naming the
    request) and moves the run on; returns the run's bell to ring (the caller enqueues it).

    Refuses: a request of another project (NotFound); viewers (Forbidden); a request that is
    not open, fewer current approvals than the environment needs, a flag that a pipeline took
    over meanwhile (Conflict). When the flag changed since the request was opened, the diff is
    recomputed (old approvals no longer count; audited CHANGE_REQUEST_UPDATED) and the commit
    refused (Conflict). Audits CHANGE_REQUEST_COMMITTED.
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
        try:
            bell = engine.commit_approved(request.run_id, request.stage_id, changes,
                                          change_request_id=request.id, now=moment)
        except engine.StageFailed as error:
            db.session.rollback()
            raise Conflict(str(error)) from None
    else:
        environment = db.session.get(Environment, request.environment_id)
        for change in changes:
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


def _apply_manual(request: ChangeRequest, change: dict[str, Any], actor: Actor,
                  feature_name: str, environment: Environment) -> None:
    kind = change["kind"]
    segment_name = ""
    if kind != "state":
        segment = db.session.get(Segment, change["segment_id"])
        segment_name = segment.name if segment else f"#{change['segment_id']}"
    if kind == "state":
        event = "FEATURE_STATE_UPDATED"
        message = f"Flag {feature_name} {_describe(change)} in {environment.name}"
    elif kind == "override":
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
    _notify_reviewers(request, db.session.get(Environment, request.environment_id), feature_name,
                      round_=request.version + 1)
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


def close_for_run(run_id: int, actor: Actor, reason: str = "the flag left the pipeline") -> int:
    """Close the run's open change requests in the caller's transaction (the flag was removed
    from its pipeline or rolled back). Returns how many. Audits CHANGE_REQUEST_CLOSED each."""
    requests = db.session.scalars(select(ChangeRequest).where(
        ChangeRequest.run_id == run_id, ChangeRequest.status == "open")
        .order_by(ChangeRequest.id)).all()
    for request in requests:
        _close(request, actor, reason)
    return len(requests)


def _close(request: ChangeRequest, actor: Actor, reason: str) -> None:
    _cas_request(request, status="closed", updated_at=clock_now())
    audit.record(actor, CLOSED, f"Change request #{request.id} closed ({reason}): {request.title}",
                 **_audit_fields(request, _feature_name(request)), run_id=request.run_id,
                 before={"status": "open"}, after={"status": "closed"})


# --- Helpers of the use cases ---------------------------------------------------------------------


def _locked(project_id: int, request_id: int) -> ChangeRequest:
    """The project's request, read under the writer lock (its row lock on PostgreSQL, taken
    after its run's: runs before change requests, the order every unit of work keeps)."""
    engine.start_writing()
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
        raise Forbidden(NOT_A_PERSON.format(act="review or commit"))
    role = access.role_in(user, project_id)
    if role is None:
        raise NotFound("Project not found.")
    if not access.can(role, needs):
        raise Forbidden(refusal)
    return user


def _cas_request(request: ChangeRequest, **values_: Any) -> None:
    moved = db.session.execute(
        update(ChangeRequest)
        .where(ChangeRequest.id == request.id, ChangeRequest.version == request.version)
        .values(version=request.version + 1, **values_)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
        db.session.rollback()
        raise Conflict("Someone else acted on this change request meanwhile; look again.")


def _cas_run(run: PipelineRun, **values_: Any) -> None:
    moved = db.session.execute(
        update(PipelineRun)
        .where(PipelineRun.id == run.id, PipelineRun.version == run.version)
        .values(version=run.version + 1, **values_)
        .execution_options(synchronize_session=False)
    ).rowcount
    if moved != 1:
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


def _refresh(request: ChangeRequest, fresh: list[dict[str, Any]], actor: Actor) -> None:
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


def _feature_name(request: ChangeRequest) -> str:
    return db.session.scalar(select(Feature.name).where(Feature.id == request.feature_id)) or ""


def _audit_fields(request: ChangeRequest, feature_name: str) -> dict[str, Any]:
    return {"project_id": request.project_id, "environment_id": request.environment_id,
            "object_type": "change_request", "object_id": request.id,
            "object_label": f"#{request.id} {request.title}", "feature_id": request.feature_id,
            "change_request_id": request.id}


def _environment_of(project_id: int, environment_id: int) -> Environment:
    environment = db.session.get(Environment, environment_id)
    if environment is None or environment.project_id != project_id:
        raise NotFound("Environment not found.")
    return environment


def _priority(raw: Any, errors: dict[str, list[str]]) -> int | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    try:
        number = int(str(raw).strip())
    except ValueError:
        number = -1
    if number < 0 or number > 1_000_000:
        errors["priority"] = ["Enter a whole number, 0 or more (lower wins)."]
        return None
    return number


def _describe(change: dict[str, Any]) -> str:
    parts = []
    if "enabled" in change:
        parts.append("enabled" if change["enabled"] else "disabled")
    if "value" in change:
        parts.append(f"value set to “{values.show(change['value'])}”")
    return " and ".join(parts) or "saved"


def _summary(shown: list[dict[str, Any]], feature: Feature) -> str:
    change = shown[0]
    if change["kind"] == "state":
        return _describe(change)
    segment = db.session.get(Segment, change["segment_id"])
    name = segment.name if segment else f"#{change['segment_id']}"
    if change["kind"] == "remove_override":
        return f"remove the override for {name}"
    return f"override for {name} {_describe(change)}"


# --- Notifications --------------------------------------------------------------------------------


def reviewer_ids(project_id: int, requester_id: int | None) -> list[int]:
    """Members who may review a request: editors and admins other than the requester."""
    query = (select(Membership.user_id).join(User, User.id == Membership.user_id)
             .where(Membership.project_id == project_id,
                    Membership.role.in_(("editor", "admin")), User.is_active_user.is_(True))
             .order_by(Membership.user_id))
    if requester_id is not None:
        query = query.where(Membership.user_id != requester_id)
    return list(db.session.scalars(query))


def _notify_reviewers(request: ChangeRequest, environment: Environment, feature_name: str, *,
                      round_: int | None = None) -> None:
    needed = environment.minimum_change_request_approvals
    _notify(request, reviewer_ids(request.project_id, request.created_by_id),
            "change_request_waiting",
            f"Change request #{request.id} waits for your review: {request.title} "
            f"({environment.name}, needs {needed} approval{'s' if needed != 1 else ''}).",
            key=f"v{round_ or request.version}:waiting")


def _notify(request: ChangeRequest, user_ids: list[int | None], kind: str, message: str, *,
            key: str, skip: int | None = None) -> None:
    users = sorted({u for u in user_ids if u is not None and u != skip})
    if not users:
        return
    url = link(request.project_id, request.id)
    db.session.add_all(
        Notification(user_id=uid, project_id=request.project_id, kind=kind, message=message,
                     link=url, idempotency_key=f"change-request:{request.id}:{key}:user:{uid}")
        for uid in users)
    if notifications.mail_configured():
        for uid, email in db.session.execute(select(User.id, User.email)
                                             .where(User.id.in_(users))):
            db.session.add(OutboxMessage(
                kind="email", payload={"to": email, "subject": f"Railyard: {message}"[:200],
                                       "body": f"{message}\n\n{url}\n"},
                idempotency_key=f"email:change-request:{request.id}:{key}:user:{uid}"))


# --- Reading for the pages ------------------------------------------------------------------------


@dataclass
class Row:
    request: ChangeRequest
    feature_name: str
    environment_name: str
    requester: str
    approvals: int
    needed: int


def _with_status(query: Select, project_id: int, status: str, environment_id: int | None,
                 feature_id: int | None) -> Select:
    """`query` narrowed to the project's requests with one status ("rejected" also lists
    closed ones), optionally of one environment and/or flag."""
    statuses = ("rejected", "closed") if status == "rejected" else (status,)
    query = query.where(ChangeRequest.project_id == project_id,
                        ChangeRequest.status.in_(statuses))
    if environment_id is not None:
        query = query.where(ChangeRequest.environment_id == environment_id)
    if feature_id is not None:
        query = query.where(ChangeRequest.feature_id == feature_id)
    return query


def count_requests(project_id: int, *, status: str = "open", environment_id: int | None = None,
                   feature_id: int | None = None) -> int:
    """How many requests `list_requests` would list with the same filters and no limit."""
    query = select(func.count()).select_from(ChangeRequest)
    return db.session.scalar(
        _with_status(query, project_id, status, environment_id, feature_id)) or 0


def list_requests(project_id: int, *, status: str = "open", environment_id: int | None = None,
                  feature_id: int | None = None, limit: int = 200, offset: int = 0) -> list[Row]:
    """The project's requests with one status ("rejected" also lists closed ones), newest
    first, optionally of one environment and/or flag, with counts: a fixed number of queries."""
    query = (select(ChangeRequest, Feature.name, Environment.name,
                    Environment.minimum_change_request_approvals)
             .join(Feature, Feature.id == ChangeRequest.feature_id)
             .join(Environment, Environment.id == ChangeRequest.environment_id))
    query = (_with_status(query, project_id, status, environment_id, feature_id)
             .order_by(ChangeRequest.id.desc()).limit(limit).offset(offset))
    rows = db.session.execute(query).all()
    ids = [r[0].id for r in rows]
    counts: dict[int, int] = {}
    if ids:
        counts = dict(db.session.execute(
            select(ChangeRequestReview.change_request_id, func.count())
            .join(ChangeRequest, ChangeRequest.id == ChangeRequestReview.change_request_id)
            .where(ChangeRequestReview.change_request_id.in_(ids),
                   ChangeRequestReview.decision == "approved",
                   ChangeRequestReview.changes_hash == ChangeRequest.changes_hash)
            .group_by(ChangeRequestReview.change_request_id)).all())
    requesters = _requesters([r[0] for r in rows])
    return [Row(r, fname, ename, requesters[r.id], counts.get(r.id, 0), needed)
            for r, fname, ename, needed in rows]


def counts_by_status(project_id: int, *, environment_id: int | None = None,
                     feature_id: int | None = None) -> dict[str, int]:
    """How many requests per tab (open, committed, rejected + closed), of one environment
    and/or flag when the list is filtered so."""
    query = select(ChangeRequest.status, func.count()).where(
        ChangeRequest.project_id == project_id)
    if environment_id is not None:
        query = query.where(ChangeRequest.environment_id == environment_id)
    if feature_id is not None:
        query = query.where(ChangeRequest.feature_id == feature_id)
    found = dict(db.session.execute(query.group_by(ChangeRequest.status)).all())
    return {"open": found.get("open", 0), "committed": found.get("committed", 0),
            "rejected": found.get("rejected", 0) + found.get("closed", 0)}


def _requesters(requests: list[ChangeRequest]) -> dict[int, str]:
    """Who asked, per request: a person, or "Release pipeline X (flag added by Y)"."""
    user_ids = {r.created_by_id for r in requests if r.created_by_id is not None}
    run_ids = {r.run_id for r in requests if r.run_id is not None}
    names = {uid: name for uid, name in db.session.execute(
        select(User.id, func.coalesce(func.nullif(User.name, ""), User.email))
        .where(User.id.in_(user_ids)))} if user_ids else {}
    pipelines = dict(db.session.execute(
        select(PipelineRun.id, ReleasePipeline.name)
        .join(ReleasePipeline, ReleasePipeline.id == PipelineRun.pipeline_id)
        .where(PipelineRun.id.in_(run_ids))).all()) if run_ids else {}
    out = {}
    for r in requests:
        person = names.get(r.created_by_id, "someone") if r.created_by_id else None
        if r.run_id is not None:
            label = f"Release pipeline {pipelines.get(r.run_id, '?')}"
            out[r.id] = f"{label} (flag added by {person})" if person else label
        else:
            out[r.id] = person or "someone"
    return out


@dataclass
class Detail:
    request: ChangeRequest
    feature: Feature
    environment: Environment
    requester: str
    pipeline: ReleasePipeline | None
    stage: PipelineStage | None
    run: PipelineRun | None
    reviews: list[ChangeRequestReview]  # every review, oldest first
    approvals: int  # of the current changes
    needed: int
    segment_names: dict[int, str]
    committed_by: User | None
    history: list[Any]  # its audit entries, oldest first

    def current(self, review: ChangeRequestReview) -> bool:
        return review.changes_hash == self.request.changes_hash


def get_detail(project_id: int, request_id: int) -> Detail:
    """Everything the detail page shows, in a fixed number of queries. NotFound for a request
    of another project."""
    request = db.session.get(ChangeRequest, request_id)
    if request is None or request.project_id != project_id:
        raise NotFound("Change request not found.")
    feature = db.session.get(Feature, request.feature_id)
    environment = db.session.get(Environment, request.environment_id)
    run = db.session.get(PipelineRun, request.run_id) if request.run_id else None
    pipeline = db.session.get(ReleasePipeline, run.pipeline_id) if run else None
    stage = db.session.get(PipelineStage, request.stage_id) if request.stage_id else None
    reviews = list(db.session.scalars(
        select(ChangeRequestReview).where(ChangeRequestReview.change_request_id == request.id)
        .options(selectinload(ChangeRequestReview.user)).order_by(ChangeRequestReview.id)))
    segment_ids = {c["segment_id"] for c in request.changes if c.get("segment_id") is not None}
    segment_names = dict(db.session.execute(
        select(Segment.id, Segment.name).where(Segment.id.in_(segment_ids))).all()) \
        if segment_ids else {}
    history = list(db.session.scalars(
        select(AuditEntry).where(AuditEntry.project_id == project_id,
                                 AuditEntry.change_request_id == request.id)
        .order_by(AuditEntry.id)))
    committed_by = (db.session.get(User, request.committed_by_id)
                    if request.committed_by_id else None)
    return Detail(request, feature, environment, _requesters([request])[request.id], pipeline,
                  stage, run, reviews, _approvals(request),
                  environment.minimum_change_request_approvals, segment_names, committed_by,
                  history)


def may_review(detail: Detail, user: User, role: str | None) -> str | None:
    """Why `user` cannot approve or reject now, or None when they can (for the page's buttons;
    the use cases check again)."""
    request = detail.request
    if request.status != "open":
        return f"This request is {request.status}."
    if not access.can(role, "editor"):
        return "Only editors and admins review change requests."
    if request.created_by_id == user.id:
        if request.run_id:
            return "You added this flag to the pipeline: someone else has to review it."
        return "You asked for these changes: someone else has to review them."
    if any(r.user_id == user.id and detail.current(r) for r in detail.reviews):
        return "You already reviewed these changes."
    return None


def flags_with_requests(project_id: int) -> list[tuple[int, str]]:
    """(id, name) of the project's flags that have change requests, by name (the flag filter)."""
    return [(fid, name) for fid, name in db.session.execute(
        select(Feature.id, Feature.name).where(Feature.id.in_(
            select(ChangeRequest.feature_id).where(ChangeRequest.project_id == project_id)))
        .order_by(Feature.name))]
