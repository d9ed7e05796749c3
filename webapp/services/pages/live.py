"""Change tokens (how an open page learns that what it shows changed) and the inbox (what waits
for a person).

A project's token is derived from what every visible change already writes, so nothing extra is
written and no hot counter row serialises the engine:
- every change of flag states, overrides, change requests and runs made by a person or the
  engine writes an audit entry in the same transaction (the log is append-only);
- every transition of a run bumps its `version` (compare-and-set), and runs are only added.
So `max(audit id)` plus, for the runs in flight, `count` and `sum(version)` change whenever a
page of the project could show something new. On PostgreSQL ids are handed out before commit,
so an entry may become visible after a higher one: the token also counts the entries in the
last AUDIT_WINDOW ids, which a late commit changes.

While some run can move by itself (waiting, applying, rolling out) pages check every
LIVE_SECONDS; otherwise (nothing in flight, or only runs waiting for a person: awaiting approval,
paused, halted) every IDLE_SECONDS. While something moves the token also carries a time bucket
so countdowns on the page are redrawn every COUNTDOWN_SECONDS.
"""

from dataclasses import dataclass
from typing import cast

from sqlalchemy import (
    BindParameter,
    Integer,
    Select,
    and_,
    bindparam,
    exists,
    func,
    select,
    update,
)

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
    PipelineRun,
    Project,
)
from webapp.services.errors import NotFound

LIVE_SECONDS = 2  # something can move by itself: a change shows within 2 s
IDLE_SECONDS = 10  # nothing moves by itself: new work is still noticed within 10 s
COUNTDOWN_SECONDS = 10  # while runs move, countdowns are redrawn this often
AUDIT_WINDOW = 200  # audit ids whose late commit (PostgreSQL) the token still notices
MOVING = ("waiting", "applying", "rolling_out")
REVIEWER_ROLES = ("editor", "admin")


@dataclass(frozen=True)
class Token:
    value: str
    moving: bool  # some run of the project can move by itself


def _project_token_statement() -> Select:
    """One statement of indexed reads (audit, runs in flight) for the project bound as
    `project_id`."""
    project_id: BindParameter[int] = bindparam("project_id", type_=Integer)
    top = select(func.coalesce(func.max(AuditEntry.id), 0)) \
        .where(AuditEntry.project_id == project_id).scalar_subquery()
    recent = select(func.count()).select_from(AuditEntry) \
        .where(AuditEntry.project_id == project_id, AuditEntry.id > top - AUDIT_WINDOW) \
        .scalar_subquery()
    return select(top, recent, func.count(), func.coalesce(func.sum(PipelineRun.version), 0),
                  func.count().filter(PipelineRun.status.in_(MOVING))) \
        .where(PipelineRun.project_id == project_id, PipelineRun.ended_at.is_(None))


# The token statements are built once, with their parameters bound at each call: building one
# (its subqueries, then SQLAlchemy's cache key for it) cost six times what running it costs on
# SQLite, and every page render and every open page's poll runs both.
_PROJECT_TOKEN = _project_token_statement()


def project_token(project_id: int) -> Token:
    """The project's change token."""
    top_id, recent_count, in_flight, versions, moving = db.session.execute(
        _PROJECT_TOKEN, {"project_id": project_id}).one()
    value = f"{top_id}.{recent_count}.{in_flight}.{versions}"
    if moving:
        value += f".t{int(clock_now().timestamp()) // COUNTDOWN_SECONDS}"
    return Token(value, bool(moving))


# --- What waits for me ----------------------------------------------------------------------------

UserId = int | BindParameter[int]  # a user id, or the parameter of a statement built once


def _reviewable(user_id: UserId):
    """Open change requests `user_id` may review: in projects where they edit, asked by someone
    else, and not yet reviewed by them in their current form."""
    mine = select(Membership.project_id).where(Membership.user_id == user_id,
                                               Membership.role.in_(REVIEWER_ROLES))
    reviewed = exists().where(ChangeRequestReview.change_request_id == ChangeRequest.id,
                              ChangeRequestReview.user_id == user_id,
                              ChangeRequestReview.changes_hash == ChangeRequest.changes_hash)
    return and_(ChangeRequest.status == "open", ChangeRequest.project_id.in_(mine),
                func.coalesce(ChangeRequest.created_by_id, 0) != user_id, ~reviewed)


def _halted(user_id: UserId):
    return and_(PipelineRun.added_by_id == user_id, PipelineRun.status == "halted",
                PipelineRun.ended_at.is_(None))


@dataclass(frozen=True)
class Inbox:
    reviews: list[tuple[ChangeRequest, str, str, str]]  # request, flag, environment, project
    halted: list[tuple[PipelineRun, str, str]]  # run, flag, project
    notifications: list[Notification]
    unread: int
    page: int
    more: bool

    @property
    def waiting(self) -> int:
        return len(self.reviews) + len(self.halted)


INBOX_PAGE = 50


def _inbox_token_statement() -> Select:
    user_id: BindParameter[int] = bindparam("user_id", type_=Integer)
    unread = Notification.read_at.is_(None)
    reviews = select(func.count()).select_from(ChangeRequest).where(_reviewable(user_id))
    halted = select(func.count()).select_from(PipelineRun).where(_halted(user_id))
    return select(func.coalesce(func.max(Notification.id), 0), func.count().filter(unread),
                  func.count().filter(unread, Notification.kind != "change_request_waiting"),
                  reviews.scalar_subquery(), halted.scalar_subquery()) \
        .where(Notification.user_id == user_id)


_INBOX_TOKEN = _inbox_token_statement()  # built once, as _PROJECT_TOKEN


def inbox_token(user_id: int) -> tuple[str, int]:
    """(token, inbox count), in one statement. The count (the navigation's): change requests I
    may review, flags of mine halted, and unread notifications other than "a change request
    waits" (those are counted as the request). The token changes when the count or the
    notifications change."""
    row = db.session.execute(_INBOX_TOKEN, {"user_id": user_id}).one()
    top, unread_count, unread_counted, review_count, halted_count = cast(
        tuple[int, int, int, int, int], tuple(row))  # all counts (or 0), SQLAlchemy types `object`
    count = unread_counted + review_count + halted_count
    return f"{top}.{unread_count}.{count}", count


def inbox(user_id: int, *, page: int = 1) -> Inbox:
    """What waits for the user, and their notifications, newest first (INBOX_PAGE a page)."""
    reviews = [(r, flag, env, proj) for r, flag, env, proj in db.session.execute(
        select(ChangeRequest, Feature.name, Environment.name, Project.name)
        .join(Feature, Feature.id == ChangeRequest.feature_id)
        .join(Environment, Environment.id == ChangeRequest.environment_id)
        .join(Project, Project.id == ChangeRequest.project_id)
        .where(_reviewable(user_id)).order_by(ChangeRequest.id))]
    halted = [(r, flag, proj) for r, flag, proj in db.session.execute(
        select(PipelineRun, Feature.name, Project.name)
        .join(Feature, Feature.id == PipelineRun.feature_id)
        .join(Project, Project.id == PipelineRun.project_id)
        .where(_halted(user_id)).order_by(PipelineRun.id))]
    page = max(1, page)
    rows = list(db.session.scalars(
        select(Notification).where(Notification.user_id == user_id)
        .order_by(Notification.id.desc()).offset((page - 1) * INBOX_PAGE).limit(INBOX_PAGE + 1)))
    unread = db.session.scalar(
        select(func.count()).select_from(Notification)
        .where(Notification.user_id == user_id, Notification.read_at.is_(None))) or 0
    return Inbox(reviews, halted, rows[:INBOX_PAGE], unread, page, len(rows) > INBOX_PAGE)


def mark_read(user_id: int, notification_id: int, *, read: bool = True) -> Notification:
    """Mark one of the user's notifications read (or unread again). NotFound for another's.
    Writes no audit entry (a person's reading is not a change to the project)."""
    note = db.session.get(Notification, notification_id)
    if note is None or note.user_id != user_id:
        raise NotFound("Notification not found.")
    note.read_at = clock_now() if read else None
    db.session.commit()
    return note


def mark_all_read(user_id: int) -> int:
    """Mark every unread notification of the user read; returns how many."""
    done = database.changed(
        update(Notification).where(Notification.user_id == user_id,
                                   Notification.read_at.is_(None))
        .values(read_at=clock_now()))
    db.session.commit()
    return done


# --- Several requests of one stage ----------------------------------------------------------------


@dataclass(frozen=True)
class StageRequest:
    request: ChangeRequest
    feature_name: str
    environment_name: str


def stage_requests(project_id: int, stage_id: int) -> list[StageRequest]:
    """The open change requests a pipeline stage opened in the project (one per flag waiting
    there), oldest first. NotFound when the stage opened none in this project."""
    rows = [StageRequest(r, flag, env) for r, flag, env in db.session.execute(
        select(ChangeRequest, Feature.name, Environment.name)
        .join(Feature, Feature.id == ChangeRequest.feature_id)
        .join(Environment, Environment.id == ChangeRequest.environment_id)
        .where(ChangeRequest.project_id == project_id, ChangeRequest.stage_id == stage_id,
               ChangeRequest.status == "open")
        .order_by(ChangeRequest.id))]
    if not rows and not db.session.scalar(
            select(ChangeRequest.id).where(ChangeRequest.project_id == project_id,
                                           ChangeRequest.stage_id == stage_id).limit(1)):
        raise NotFound("No change requests for this stage.")
    return rows
