"""The approval gate: a stage whose environment needs approvals opens a change request holding
its exact changes (the run waits "awaiting approval"); a flag leaving its pipeline closes its
open requests. Also what both sides of a change request share: its events, diff and hash,
compare-and-set, audit fields and the reviewers' notifications.
"""

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import select, update

from webapp import database
from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    ChangeRequest,
    Environment,
    Feature,
    Membership,
    Notification,
    OutboxMessage,
    PipelineRun,
    StageExecution,
    User,
)
from webapp.models.changes import (
    Change,
    PlannedChange,
    RolloutStart,
    RolloutState,
    ShownChange,
    TargetState,
)
from webapp.orm import fit
from webapp.services.actors import Actor
from webapp.services.errors import Conflict
from webapp.services.governance import audit, notifications
from webapp.services.platform import flag_changes

OPENED = "CHANGE_REQUEST_OPENED"
APPROVED = "CHANGE_REQUEST_APPROVED"
REJECTED = "CHANGE_REQUEST_REJECTED"
COMMITTED = "CHANGE_REQUEST_COMMITTED"
CLOSED = "CHANGE_REQUEST_CLOSED"
REOPENED = "CHANGE_REQUEST_REOPENED"
UPDATED = "CHANGE_REQUEST_UPDATED"
EVENT_TYPES = (OPENED, APPROVED, REJECTED, COMMITTED, CLOSED, REOPENED, UPDATED)
STATUSES = ("open", "committed", "rejected", "closed")
# Keys a stored change carries for display only; the applied change is the rest.
_SHOWN = ("before", "after")


def approvals_needed(environment_id: int) -> int:
    """How many approvals a change in the environment needs (0: changes apply at once)."""
    return db.session.scalar(select(Environment.minimum_change_request_approvals)
                             .where(Environment.id == environment_id)) or 0


def link(project_id: int, request_id: int) -> str:
    return f"/projects/{project_id}/change-requests/{request_id}"


# --- The exact diff -------------------------------------------------------------------------------


def bare(change: Mapping[str, Any]) -> Change | RolloutStart:
    """The change to apply, without its before/after (a stored ShownChange: what `with_diff`
    was given)."""
    return cast("Change | RolloutStart", {k: v for k, v in change.items() if k not in _SHOWN})


def with_diff(changes: Sequence[Change | RolloutStart]) -> list[ShownChange]:
    """The changes, each with `before` and `after` as they would be if applied now, in order
    (a later change to the same target starts from the earlier one's result)."""
    current: dict[tuple, TargetState | None] = {}
    out: list[ShownChange] = []
    for change in map(bare, changes):
        if change["kind"] == "rollout":
            rollout: RolloutState = {"percent": change["percent"], "enabled": change["enabled"]}
            if "value" in change:
                rollout["value"] = change["value"]
            out.append({**change, "before": None, "after": rollout})
            continue
        target_kind = "state" if change["kind"] == "state" else "override"
        key = (target_kind, change["feature_id"], change["environment_id"],
               change.get("segment_id"))
        if key not in current:
            # An override's removal reads the override it removes.
            current[key] = flag_changes.read_target(change)
        before = current[key]
        after: TargetState | None
        if change["kind"] == "remove_override":
            after = None
        else:
            if before is not None:
                after = before.copy()
            else:  # a new override starts from the flag's state at that point (flag_changes)
                state = current.get(("state", change["feature_id"], change["environment_id"],
                                     None)) or flag_changes.state_now(change["feature_id"],
                                                                      change["environment_id"])
                after = {"enabled": state["enabled"], "value": state["value"]}
            if change["kind"] == "override" and (priority := change.get("priority")) is not None:
                after["priority"] = priority
            if "enabled" in change:
                after["enabled"] = bool(change["enabled"])
            if "value" in change:
                after["value"] = change["value"]
        current[key] = after
        out.append({**change, "before": before, "after": after})
    return out


def _hash(changes: list[ShownChange], version: int) -> str:
    # The version salts the hash: re-opening a request (same changes) still voids old reviews.
    text = json.dumps(changes, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"v{version}:{text}".encode()).hexdigest()


# --- Opening --------------------------------------------------------------------------------------


def open_for_stage(*, run: PipelineRun, pipeline_name: str, stage_id: int, stage_name: str,
                   environment_id: int, feature_name: str, changes: list[PlannedChange],
                   now: datetime) -> ChangeRequest:
    """Open a change request holding exactly the stage's planned `changes` (each with its
    before/after), in the engine's transition (the caller commits, with the run's
    compare-and-set to "awaiting_approval"). The requester is who added the flag.

    Refuses nothing. Audits CHANGE_REQUEST_OPENED (actor: the pipeline); notifies reviewers.
    """
    environment = db.session.get_one(Environment, environment_id)
    shown = with_diff(changes)
    request = ChangeRequest(
        project_id=run.project_id, environment_id=environment_id, feature_id=run.feature_id,
        title=fit(ChangeRequest.title, f"{feature_name} → {stage_name} ({pipeline_name})"),
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


def _cas_request(request: ChangeRequest, **values_: Any) -> None:
    if not database.compare_and_set(ChangeRequest, request.id, request.version, **values_):
        db.session.rollback()
        raise Conflict("Someone else acted on this change request meanwhile; look again.")


def _feature_name(request: ChangeRequest) -> str:
    return db.session.scalar(select(Feature.name).where(Feature.id == request.feature_id)) or ""


def _audit_fields(request: ChangeRequest, feature_name: str) -> dict[str, Any]:
    return {"project_id": request.project_id, "environment_id": request.environment_id,
            "object_type": "change_request", "object_id": request.id,
            "object_label": f"#{request.id} {request.title}", "feature_id": request.feature_id,
            "change_request_id": request.id}


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


def _notify(request: ChangeRequest, user_ids: Sequence[int | None], kind: str, message: str, *,
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
