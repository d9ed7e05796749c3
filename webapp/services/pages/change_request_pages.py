"""Change requests as their pages read them: lists by status, counts, one request's detail, and
whether a person may review it. Reads only.
"""

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import selectinload

from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    ChangeRequest,
    ChangeRequestReview,
    Environment,
    Feature,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    Segment,
    User,
)
from webapp.services.change_requests.workflow import _approvals
from webapp.services.errors import NotFound
from webapp.services.lookups import one_in
from webapp.services.platform import access

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
    names: dict[int, str] = dict(db.session.execute(
        select(User.id, func.coalesce(func.nullif(User.name, ""), User.email))
        .where(User.id.in_(user_ids))).all()) if user_ids else {}
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
    feature = db.session.get_one(Feature, request.feature_id)
    environment = db.session.get_one(Environment, request.environment_id)
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


def find_request(request_id: int) -> ChangeRequest:
    """The change request, whatever its project (the caller checks who may see it)."""
    return one_in(ChangeRequest, request_id, "Change request not found.")
