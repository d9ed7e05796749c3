"""Admin API: change requests, on Flagsmith's paths: an environment's list
(`/api/v1/environments/<key>/list-change-requests/`) and one request with its actions
(`/api/v1/features/workflows/change-requests/<id>/`, `.../approve/`, `.../reject/`,
`.../commit/`).

Reviewing and committing are a person's acts (the service records who): an organisation
API key is refused with 403, a personal token acts as its user.
"""

from typing import Any

from flask import request

from jobs import outbox, transitions
from webapp.models import ChangeRequest, ChangeRequestReview, Environment, User
from webapp.models.changes import ShownChange
from webapp.services.change_requests import workflow
from webapp.services.errors import Invalid
from webapp.services.pages import change_request_pages
from webapp.services.platform import api_auth
from webapp.services.platform.api_auth import Principal
from webapp.services.runs import approvals
from webapp.views.api import bp
from webapp.views.api.common import (
    body,
    int_arg,
    iso,
    operation,
    page_and_size,
    page_of,
    principal,
)
from webapp.views.api.governance_schemas import (
    ChangeRequestCommitBodySchema,
    ChangeRequestReviewBodySchema,
    ChangeRequestSchema,
    ChangeRequestSummarySchema,
)
from webapp.views.api.schemas import page_schema

ONE = "/features/workflows/change-requests/<int:request_id>/"


# --- Serializing ----------------------------------------------------------------------------------


def _environment_ref(env: Environment) -> dict:
    return {"id": env.id, "name": env.name, "api_key": env.client_key}


def _user_ref(user: User | None) -> dict | None:
    if user is None:
        return None
    return {"id": user.id, "email": user.email, "name": user.name or ""}


def _summary(cr: ChangeRequest, *, environment: dict, feature: dict, requested_by: str,
             approvals: int, needed: int) -> dict[str, Any]:
    return {"id": cr.id, "title": cr.title, "description": cr.description or "",
            "status": cr.status, "project": cr.project_id, "environment": environment,
            "feature": feature, "requested_by": requested_by, "created_by": cr.created_by_id,
            "approval_count": approvals, "approvals_needed": needed,
            "created_at": iso(cr.created_at), "updated_at": iso(cr.updated_at),
            "committed_at": iso(cr.committed_at)}


def serialize_row(row: change_request_pages.Row, env: Environment) -> dict[str, Any]:
    return _summary(row.request, environment=_environment_ref(env),
                    feature={"id": row.request.feature_id, "name": row.feature_name},
                    requested_by=row.requester, approvals=row.approvals, needed=row.needed)


def serialize_detail(detail: change_request_pages.Detail) -> dict[str, Any]:
    """A change request as `GET .../change-requests/<id>/` answers it."""
    cr = detail.request
    answer = _summary(cr, environment=_environment_ref(detail.environment),
                      feature={"id": detail.feature.id, "name": detail.feature.name},
                      requested_by=detail.requester, approvals=detail.approvals,
                      needed=detail.needed)
    pipeline = None
    if detail.pipeline is not None:
        pipeline = {"id": detail.pipeline.id, "name": detail.pipeline.name,
                    "stage": {"id": detail.stage.id, "name": detail.stage.name}
                    if detail.stage else None,
                    "run": {"id": detail.run.id, "status": detail.run.status}
                    if detail.run else None}
    answer.update(
        changes=[_change(change, detail.segment_names) for change in cr.changes],
        changes_hash=cr.changes_hash,
        approvals=[{"user": _user_ref(r.user), "approved_at": iso(r.created_at),
                    "comment": r.comment or "", "current": detail.current(r)}
                   for r in detail.reviews if r.decision == "approved"],
        reviews=[_review(r, detail) for r in detail.reviews],
        pipeline=pipeline,
        committed_by=_user_ref(detail.committed_by))
    return answer


def _change(change: ShownChange, segment_names: dict[int, str]) -> dict[str, Any]:
    segment = change.get("segment_id")
    return {"kind": change["kind"], "segment": segment,
            "segment_name": segment_names.get(segment, f"#{segment}") if segment else None,
            "action_type": change.get("action_type"),
            "before": change.get("before"), "after": change.get("after")}


def _review(review: ChangeRequestReview, detail: change_request_pages.Detail) -> dict[str, Any]:
    return {"user": _user_ref(review.user), "decision": review.decision,
            "comment": review.comment or "", "created_at": iso(review.created_at),
            "current": detail.current(review)}


def read(project_id: int, request_id: int) -> dict[str, Any]:
    return serialize_detail(change_request_pages.get_detail(project_id, request_id))


# --- Endpoints ------------------------------------------------------------------------------------


@bp.get("/environments/<api_key>/list-change-requests/")
@operation("List an environment's change requests, newest first (?status=open (default), "
           "committed, rejected (with closed ones, as the dashboard's tab) or closed; "
           "?feature=<id> for one flag)", "change requests",
           response=page_schema(ChangeRequestSummarySchema), paginated=True,
           query={"status": {"type": "string", "required": False},
                  "feature": {"type": "integer", "required": False}})
def list_change_requests(api_key: str):
    env = api_auth.environment_for(principal(), api_key)
    status = request.args.get("status") or "open"
    if status not in approvals.STATUSES:
        raise Invalid("Unknown status.", {"status": [
            f"One of {', '.join(approvals.STATUSES)}."]})
    feature_id = int_arg("feature")
    page, size = page_and_size()
    count = change_request_pages.count_requests(env.project_id, status=status,
                                                environment_id=env.id, feature_id=feature_id)
    rows = change_request_pages.list_requests(env.project_id, status=status,
                                              environment_id=env.id, feature_id=feature_id,
                                              limit=size, offset=(page - 1) * size)
    return page_of(rows, count, page, size, lambda row: serialize_row(row, env), api_key=api_key)


@bp.get(ONE)
@operation("Read a change request: its changes with before/after, reviews, and the pipeline "
           "stage it came from", "change requests", response=ChangeRequestSchema)
def get_change_request(request_id: int):
    cr = _reachable(principal(), request_id)
    return read(cr.project_id, cr.id)


@bp.post(f"{ONE}approve/")
@operation("Approve a change request (editors and admins other than the requester, with a "
           "personal token; optional comment and the changes_hash you reviewed)",
           "change requests", body=ChangeRequestReviewBodySchema, response=ChangeRequestSchema)
def approve_change_request(request_id: int):
    return _review_as(workflow.approve, request_id)


@bp.post(f"{ONE}reject/")
@operation("Reject a change request (editors and admins other than the requester, with a "
           "personal token; optional comment); a pipeline waiting for it halts",
           "change requests", body=ChangeRequestReviewBodySchema, response=ChangeRequestSchema)
def reject_change_request(request_id: int):
    return _review_as(workflow.reject, request_id)


@bp.post(f"{ONE}commit/")
@operation("Commit an approved change request: apply its changes (editors and admins, with a "
           "personal token; 409 without enough approvals or when the flag changed meanwhile; "
           "while its environment is frozen or the line stopped, 409 unless an admin gives "
           "break_glass_reason)",
           "change requests", body=ChangeRequestCommitBodySchema, response=ChangeRequestSchema)
def commit_change_request(request_id: int):
    who = principal()
    cr = _reachable(who, request_id)
    data = body(ChangeRequestCommitBodySchema, optional=True)
    bell = workflow.commit(cr.project_id, cr.id, who.actor,
                           break_glass_reason=data.get("break_glass_reason"))
    if bell is not None:
        transitions.ring([bell])
    outbox.ring()
    return read(cr.project_id, cr.id)


def _review_as(use_case, request_id: int):
    who = principal()
    cr = _reachable(who, request_id)
    data = body(ChangeRequestReviewBodySchema, optional=True)
    use_case(cr.project_id, cr.id, who.actor, seen_hash=data["changes_hash"],
             comment=data["comment"])
    outbox.ring()
    return read(cr.project_id, cr.id)


def _reachable(who: Principal, request_id: int) -> ChangeRequest:
    """The change request if the principal sees its project (404 otherwise)."""
    cr = change_request_pages.find_request(request_id)
    api_auth.project_for(who, cr.project_id)
    return cr


