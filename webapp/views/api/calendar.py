"""Admin API: the release calendar. Deployment windows per environment
(`/api/v1/environments/<api_key>/deployment-windows/`), freezes and the stop-the-line switch of a
project (`/api/v1/projects/<id>/freezes/`, `.../stop/`) or of the organisation
(`/api/v1/organisations/<id>/freezes/`, `.../stop/`) — so an incident tool can pull the switch.

Reads for anyone who reaches the project (organisation: its key, a site admin, or a member of
one of its projects); writes for admins only (project admins, the organisation's key, site
admins; the organisation's own calendar: its key and site admins). Bad input answers 4xx JSON
with a reason and changes nothing."""

from typing import Any

from flask import request
from marshmallow import fields, validate
from sqlalchemy import select

from jobs import outbox, transitions
from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import Membership, Organisation, Project
from webapp.services.errors import Forbidden, NotFound
from webapp.services.platform import api_auth
from webapp.services.platform.api_auth import Principal
from webapp.services.runs import calendar
from webapp.views.api import bp
from webapp.views.api.common import MAX_ID, Id, Shape, body, operation, principal

CALENDAR = "release calendar"
PAST = {"include_past": {"type": "boolean", "required": False}}


class WindowSchema(Shape):
    weekday = fields.Raw(required=True, metadata={
        "description": "0 (Monday) to 6 (Sunday), or the English name of the day."})
    opens = fields.String(required=True, metadata={"description": "HH:MM, local time."})
    closes = fields.String(required=True, metadata={
        "description": "HH:MM, local time, after `opens` (24:00 closes at midnight)."})


class ScheduleSchema(Shape):
    environment_id = fields.Integer(required=True)
    environment = fields.String(required=True)
    timezone = fields.String(required=True, metadata={"description": "IANA time zone."})
    windows = fields.List(fields.Nested(WindowSchema), required=True, metadata={
        "description": "Weekly opening hours; none: always open."})
    open_now = fields.Boolean(required=True)
    next_opening = fields.String(allow_none=True, required=True, metadata={
        "description": "When a stage may next apply (windows, freezes, the stop switch); null "
                       "while the line is stopped."})
    note = fields.String(allow_none=True, required=True, metadata={
        "description": "e.g. \"Production: next window Monday 09:00\"; null when open."})


class ScheduleBodySchema(Shape):
    timezone = fields.String(required=True, validate=validate.Length(min=1, max=64))
    windows = fields.List(fields.Dict(), required=True, validate=validate.Length(
        max=calendar.MAX_WINDOWS))


class FreezeSchema(Shape):
    id = fields.Integer(required=True)
    scope = fields.String(required=True, metadata={"description": "project | organisation"})
    organisation_id = fields.Integer(required=True)
    project_id = fields.Integer(allow_none=True, required=True)
    starts_at = fields.String(required=True)
    ends_at = fields.String(required=True)
    reason = fields.String(required=True)
    all_environments = fields.Boolean(required=True)
    environments = fields.List(fields.Integer(), required=True, metadata={
        "description": "Environment ids frozen when not all_environments."})
    created_by = fields.String(required=True)
    created_at = fields.String(required=True)
    lifted_at = fields.String(allow_none=True, required=True)
    lifted_by = fields.String(allow_none=True, required=True)
    version = fields.Integer(required=True)
    state = fields.String(required=True, metadata={
        "description": "scheduled | active | ended | lifted"})


class FreezeListSchema(Shape):
    count = fields.Integer(required=True)
    results = fields.List(fields.Nested(FreezeSchema), required=True)


class FreezeCreateSchema(Shape):
    starts_at = fields.AwareDateTime(required=True, metadata={
        "description": "ISO 8601 with a zone, e.g. 2030-12-20T00:00:00Z."})
    ends_at = fields.AwareDateTime(required=True)
    reason = fields.String(required=True, validate=validate.Length(
        min=1, max=calendar.MAX_REASON))
    environments = fields.List(Id(), allow_none=True, load_default=None,
                               validate=validate.Length(min=1, max=500), metadata={
                                   "description": "Environment ids; omit or null for all."})


class FreezeUpdateSchema(Shape):
    starts_at = fields.AwareDateTime()
    ends_at = fields.AwareDateTime()
    reason = fields.String(validate=validate.Length(min=1, max=calendar.MAX_REASON))
    environments = fields.List(Id(), allow_none=True, validate=validate.Length(min=1, max=500),
                               metadata={"description": "Environment ids; null for all."})
    version = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_ID), metadata={
        "description": "The version you read: a stale edit answers 409."})


class ReleaseSchema(Shape):
    resumed = fields.Integer(required=True, metadata={
        "description": "Flags that resume with the time they had left."})
    still_held = fields.Integer(required=True, metadata={
        "description": "Flags another freeze or stop still holds."})
    first_due = fields.String(allow_none=True, required=True)
    last_due = fields.String(allow_none=True, required=True, metadata={
        "description": "Their due work is spread: this is when the last one is due."})


class FreezeChangeSchema(Shape):
    freeze = fields.Nested(FreezeSchema, required=True)
    released = fields.Nested(ReleaseSchema, required=True)


class StopSchema(Shape):
    id = fields.Integer(required=True)
    scope = fields.String(required=True)
    organisation_id = fields.Integer(required=True)
    project_id = fields.Integer(allow_none=True, required=True)
    reason = fields.String(required=True)
    stopped_by = fields.String(required=True)
    stopped_at = fields.String(required=True)
    lifted_at = fields.String(allow_none=True, required=True)
    lifted_by = fields.String(allow_none=True, required=True)
    active = fields.Boolean(required=True)


class HoldSchema(Shape):
    kind = fields.String(required=True, metadata={"description": "stop | freeze | window"})
    scope = fields.String(required=True)
    id = fields.Integer(allow_none=True, required=True)
    who = fields.String(required=True)
    why = fields.String(required=True)
    since = fields.String(allow_none=True, required=True)
    until = fields.String(allow_none=True, required=True)
    text = fields.String(required=True)


class StopStateSchema(Shape):
    stopped = fields.Boolean(required=True, metadata={
        "description": "Whether this scope's own switch is pulled."})
    stop = fields.Nested(StopSchema, allow_none=True, required=True)
    holds = fields.List(fields.Nested(HoldSchema), required=True, metadata={
        "description": "What holds transitions now (a project: its stop or the "
                       "organisation's, then active freezes)."})


class StopBodySchema(Shape):
    reason = fields.String(required=True, validate=validate.Length(
        min=1, max=calendar.MAX_REASON))


class StopResultSchema(Shape):
    stop = fields.Nested(StopSchema, required=True)
    held = fields.Integer(required=True, metadata={"description": "Flags held in place."})


class LiftResultSchema(Shape):
    stop = fields.Nested(StopSchema, required=True)
    released = fields.Nested(ReleaseSchema, required=True)


# --- Reach ----------------------------------------------------------------------------------------


def _organisation(who: Principal, organisation_id: int, needs: str) -> Organisation:
    """The organisation if the principal reaches it (404 otherwise; 403 for a write without
    the right)."""
    organisation = db.session.get(Organisation, organisation_id) \
        if 0 < organisation_id <= MAX_ID else None
    if organisation is None:
        raise NotFound("Not found.")
    if who.kind == "organisation":
        if who.organisation_id != organisation_id:
            raise NotFound("Not found.")
        return organisation
    user = who.user
    if user is None:
        raise NotFound("Not found.")
    if user.is_site_admin:
        return organisation
    member = db.session.scalar(
        select(Membership.id).join(Project, Project.id == Membership.project_id)
        .where(Membership.user_id == user.id, Project.organisation_id == organisation_id)
        .limit(1))
    if member is None:
        raise NotFound("Not found.")
    if needs == "admin":
        raise Forbidden("Only site admins and the organisation's key change its release "
                        "calendar.")
    return organisation


def _released(released: calendar.Released) -> dict[str, Any]:
    return {"resumed": released.resumed, "still_held": released.still_held,
            "first_due": calendar.iso(released.first_due),
            "last_due": calendar.iso(released.last_due)}


def _ring(released: calendar.Released) -> None:
    transitions.ring(released.bells)
    outbox.ring()


def _include_past() -> bool:
    return request.args.get("include_past", "").lower() in ("1", "true", "yes")


# --- Windows --------------------------------------------------------------------------------------


def _schedule(environment_id: int) -> dict[str, Any]:
    moment = clock_now()
    memo = calendar.Memo()
    schedule = calendar.get_schedule(environment_id, memo)
    opening = calendar.next_opening(environment_id, moment, memo)
    return {**schedule.as_dict(), "open_now": opening == moment,
            "next_opening": calendar.iso(opening),
            "note": calendar.next_window_text(environment_id, moment, memo)}


@bp.get("/environments/<api_key>/deployment-windows/")
@operation("An environment's deployment windows, time zone and next opening", CALENDAR,
           response=ScheduleSchema)
def get_deployment_windows(api_key: str) -> Any:
    environment = api_auth.environment_for(principal(), api_key)
    return _schedule(environment.id)


@bp.put("/environments/<api_key>/deployment-windows/")
@operation("Replace an environment's deployment windows (project admins): weekly opening hours "
           "in an IANA time zone; an empty list means always open", CALENDAR,
           body=ScheduleBodySchema, response=ScheduleSchema)
def put_deployment_windows(api_key: str) -> Any:
    who = principal()
    environment = api_auth.environment_for(who, api_key, needs="admin")
    data = body(ScheduleBodySchema)
    windows = calendar.parse_windows(data["windows"])
    calendar.set_windows(environment.id, data["timezone"], windows, who.actor)
    return _schedule(environment.id)


# --- Freezes --------------------------------------------------------------------------------------


def _freeze_list(organisation_id: int, project_id: int | None) -> dict[str, Any]:
    moment = clock_now()
    freezes = calendar.list_freezes(organisation_id, project_id, include_past=_include_past(),
                                    at=moment)
    return {"count": len(freezes), "results": [f.as_dict(moment) for f in freezes]}


def _create_freeze(who: Principal, organisation_id: int, project_id: int | None) -> Any:
    data = body(FreezeCreateSchema)
    freeze, released = calendar.create_freeze(
        who.actor, organisation_id=organisation_id, project_id=project_id,
        starts_at=data["starts_at"], ends_at=data["ends_at"], reason=data["reason"],
        environment_ids=data["environments"])
    outbox.ring()
    return freeze.as_dict(), 201


def _update_freeze(who: Principal, organisation_id: int, project_id: int | None,
                   freeze_id: int) -> Any:
    data = body(FreezeUpdateSchema, partial=True)
    environments = data.get("environments", ...)
    freeze, released = calendar.update_freeze(
        who.actor, freeze_id, organisation_id=organisation_id, project_id=project_id,
        expected_version=data.get("version"), starts_at=data.get("starts_at"),
        ends_at=data.get("ends_at"), reason=data.get("reason"),
        environment_ids=environments if isinstance(environments, list) else None,
        all_environments=True if environments is None else None)
    _ring(released)
    return {"freeze": freeze.as_dict(), "released": _released(released)}


def _lift_freeze(who: Principal, organisation_id: int, project_id: int | None,
                 freeze_id: int) -> Any:
    freeze, released = calendar.lift_freeze(who.actor, freeze_id,
                                            organisation_id=organisation_id,
                                            project_id=project_id)
    _ring(released)
    return {"freeze": freeze.as_dict(), "released": _released(released)}


@bp.get("/projects/<int:project_id>/freezes/")
@operation("A project's freezes and the organisation's (scheduled and active; "
           "?include_past=true for ended and lifted ones too)", CALENDAR,
           response=FreezeListSchema, query=PAST)
def list_project_freezes(project_id: int) -> Any:
    project = api_auth.project_for(principal(), project_id)
    return _freeze_list(project.organisation_id, project.id)


@bp.post("/projects/<int:project_id>/freezes/")
@operation("Freeze a project from starts_at to ends_at (project admins): no stage applies "
           "into the frozen environments; flags wait with their remaining time", CALENDAR,
           body=FreezeCreateSchema, response=FreezeSchema, status=201)
def create_project_freeze(project_id: int) -> Any:
    who = principal()
    project = api_auth.project_for(who, project_id, needs="admin")
    return _create_freeze(who, project.organisation_id, project.id)


@bp.get("/projects/<int:project_id>/freezes/<int:freeze_id>/")
@operation("One freeze of the project (or the organisation's)", CALENDAR,
           response=FreezeSchema)
def get_project_freeze(project_id: int, freeze_id: int) -> Any:
    project = api_auth.project_for(principal(), project_id)
    return calendar.get_freeze(freeze_id, organisation_id=project.organisation_id,
                               project_id=project.id).as_dict()


@bp.patch("/projects/<int:project_id>/freezes/<int:freeze_id>/")
@operation("Change a freeze's period, reason or environments (project admins; 409 once it is "
           "over or when `version` is stale)", CALENDAR, body=FreezeUpdateSchema,
           response=FreezeChangeSchema)
def update_project_freeze(project_id: int, freeze_id: int) -> Any:
    who = principal()
    project = api_auth.project_for(who, project_id, needs="admin")
    return _update_freeze(who, project.organisation_id, project.id, freeze_id)


@bp.post("/projects/<int:project_id>/freezes/<int:freeze_id>/lift/")
@operation("Lift a freeze now (project admins): its flags resume, their due work spread",
           CALENDAR, response=FreezeChangeSchema)
def lift_project_freeze(project_id: int, freeze_id: int) -> Any:
    who = principal()
    project = api_auth.project_for(who, project_id, needs="admin")
    return _lift_freeze(who, project.organisation_id, project.id, freeze_id)


@bp.get("/organisations/<int:organisation_id>/freezes/")
@operation("The organisation-wide freezes", CALENDAR, response=FreezeListSchema,
           query=PAST)
def list_organisation_freezes(organisation_id: int) -> Any:
    organisation = _organisation(principal(), organisation_id, "viewer")
    return _freeze_list(organisation.id, None)


@bp.post("/organisations/<int:organisation_id>/freezes/")
@operation("Freeze the whole organisation (its key, site admins): every project's "
           "environments, or the environment ids given", CALENDAR, body=FreezeCreateSchema,
           response=FreezeSchema, status=201)
def create_organisation_freeze(organisation_id: int) -> Any:
    who = principal()
    organisation = _organisation(who, organisation_id, "admin")
    return _create_freeze(who, organisation.id, None)


@bp.get("/organisations/<int:organisation_id>/freezes/<int:freeze_id>/")
@operation("One organisation-wide freeze", CALENDAR, response=FreezeSchema)
def get_organisation_freeze(organisation_id: int, freeze_id: int) -> Any:
    organisation = _organisation(principal(), organisation_id, "viewer")
    freeze = calendar.get_freeze(freeze_id, organisation_id=organisation.id)
    if freeze.project_id is not None:
        raise NotFound("Freeze not found.")
    return freeze.as_dict()


@bp.patch("/organisations/<int:organisation_id>/freezes/<int:freeze_id>/")
@operation("Change an organisation-wide freeze (its key, site admins)", CALENDAR,
           body=FreezeUpdateSchema, response=FreezeChangeSchema)
def update_organisation_freeze(organisation_id: int, freeze_id: int) -> Any:
    who = principal()
    organisation = _organisation(who, organisation_id, "admin")
    _org_freeze(organisation.id, freeze_id)
    return _update_freeze(who, organisation.id, None, freeze_id)


@bp.post("/organisations/<int:organisation_id>/freezes/<int:freeze_id>/lift/")
@operation("Lift an organisation-wide freeze now (its key, site admins)", CALENDAR,
           response=FreezeChangeSchema)
def lift_organisation_freeze(organisation_id: int, freeze_id: int) -> Any:
    who = principal()
    organisation = _organisation(who, organisation_id, "admin")
    _org_freeze(organisation.id, freeze_id)
    return _lift_freeze(who, organisation.id, None, freeze_id)


def _org_freeze(organisation_id: int, freeze_id: int) -> None:
    if calendar.get_freeze(freeze_id, organisation_id=organisation_id).project_id is not None:
        raise NotFound("Freeze not found.")


# --- Stop the line --------------------------------------------------------------------------------


def _stop_state(organisation_id: int, project_id: int | None) -> dict[str, Any]:
    stop = calendar.get_stop(organisation_id, project_id)
    if project_id is not None:
        holds = calendar.holds_for_project(project_id)
    else:
        own = stop
        holds = [] if own is None else [calendar.Hold(
            "stop", "organisation", None, own.stopped_by, own.reason, own.stopped_at, own.id)]
    return {"stopped": stop is not None, "stop": None if stop is None else stop.as_dict(),
            "holds": [h.as_dict() for h in holds]}


@bp.get("/projects/<int:project_id>/stop/")
@operation("Whether the project's line is stopped, and what holds its transitions now",
           CALENDAR, response=StopStateSchema)
def get_project_stop(project_id: int) -> Any:
    project = api_auth.project_for(principal(), project_id)
    return _stop_state(project.organisation_id, project.id)


@bp.post("/projects/<int:project_id>/stop/")
@operation("Stop the line (project admins, an incident tool's key): every transition of the "
           "project holds until lifted; 409 when stopped already", CALENDAR,
           body=StopBodySchema, response=StopResultSchema, status=201)
def stop_project_line(project_id: int) -> Any:
    who = principal()
    project = api_auth.project_for(who, project_id, needs="admin")
    data = body(StopBodySchema)
    stop, held = calendar.stop_line(who.actor, organisation_id=project.organisation_id,
                                    project_id=project.id, reason=data["reason"])
    outbox.ring()
    return {"stop": stop.as_dict(), "held": held}, 201


@bp.post("/projects/<int:project_id>/stop/lift/")
@operation("Lift the project's stop (project admins): every flag resumes where it was, its "
           "due work spread; 409 when not stopped", CALENDAR, response=LiftResultSchema)
def lift_project_stop(project_id: int) -> Any:
    who = principal()
    project = api_auth.project_for(who, project_id, needs="admin")
    stop, released = calendar.lift_stop(who.actor, organisation_id=project.organisation_id,
                                        project_id=project.id)
    _ring(released)
    return {"stop": stop.as_dict(), "released": _released(released)}


@bp.get("/organisations/<int:organisation_id>/stop/")
@operation("Whether the organisation's line is stopped", CALENDAR, response=StopStateSchema)
def get_organisation_stop(organisation_id: int) -> Any:
    organisation = _organisation(principal(), organisation_id, "viewer")
    return _stop_state(organisation.id, None)


@bp.post("/organisations/<int:organisation_id>/stop/")
@operation("Stop the line for the whole organisation (its key, site admins); 409 when "
           "stopped already", CALENDAR, body=StopBodySchema, response=StopResultSchema,
           status=201)
def stop_organisation_line(organisation_id: int) -> Any:
    who = principal()
    organisation = _organisation(who, organisation_id, "admin")
    data = body(StopBodySchema)
    stop, held = calendar.stop_line(who.actor, organisation_id=organisation.id,
                                    project_id=None, reason=data["reason"])
    outbox.ring()
    return {"stop": stop.as_dict(), "held": held}, 201


@bp.post("/organisations/<int:organisation_id>/stop/lift/")
@operation("Lift the organisation's stop (its key, site admins); 409 when not stopped",
           CALENDAR, response=LiftResultSchema)
def lift_organisation_stop(organisation_id: int) -> Any:
    who = principal()
    organisation = _organisation(who, organisation_id, "admin")
    stop, released = calendar.lift_stop(who.actor, organisation_id=organisation.id,
                                        project_id=None)
    _ring(released)
    return {"stop": stop.as_dict(), "released": _released(released)}
