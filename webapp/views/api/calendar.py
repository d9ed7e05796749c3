"""Admin API: the release calendar. Deployment windows per environment
(`/api/v1/environments/<api_key>/deployment-windows/`), freezes and the stop-the-line switch of a
project (`/api/v1/projects/<id>/freezes/`, `.../stop/`) or of the organisation
(`/api/v1/organisations/<id>/freezes/`, `.../stop/`) — so an incident tool can pull the switch.

Reads for anyone who reaches the project (organisation: its key, a site admin, or a member of
one of its projects); writes for admins only (project admins, the organisation's key, site
admins; the organisation's own calendar: its key and site admins). Bad input answers 4xx JSON
with a reason and changes nothing."""

from dataclasses import dataclass
from typing import Any

from flask import request
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
from webapp.views.api.calendar_schemas import (
    FreezeChangeSchema,
    FreezeCreateSchema,
    FreezeListSchema,
    FreezeSchema,
    FreezeUpdateSchema,
    LiftResultSchema,
    ScheduleBodySchema,
    ScheduleSchema,
    StopBodySchema,
    StopResultSchema,
    StopStateSchema,
)
from webapp.views.api.common import MAX_ID, body, operation, principal

CALENDAR = "release calendar"
PAST = {"include_past": {"type": "boolean", "required": False}}


# --- Reach ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scope:
    """Whose calendar a request reaches: a project's (and its organisation's), or with
    project_id None the organisation's own."""

    who: Principal
    organisation_id: int
    project_id: int | None


def _project_scope(project_id: int, needs: str = "viewer") -> Scope:
    who = principal()
    project = api_auth.project_for(who, project_id, needs=needs)
    return Scope(who, project.organisation_id, project.id)


def _organisation_scope(organisation_id: int, needs: str = "viewer") -> Scope:
    who = principal()
    return Scope(who, _organisation(who, organisation_id, needs).id, None)


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


# --- Freezes: one helper per action, for a project's calendar and the organisation's -------------


def _freeze_list(scope: Scope) -> dict[str, Any]:
    moment = clock_now()
    freezes = calendar.list_freezes(scope.organisation_id, scope.project_id,
                                    include_past=_include_past(), at=moment)
    return {"count": len(freezes), "results": [f.as_dict(moment) for f in freezes]}


def _freeze(scope: Scope, freeze_id: int) -> calendar.FreezeView:
    """The freeze: of the project or the organisation's; at the organisation, only its own."""
    freeze = calendar.get_freeze(freeze_id, organisation_id=scope.organisation_id,
                                 project_id=scope.project_id)
    if scope.project_id is None and freeze.project_id is not None:
        raise NotFound("Freeze not found.")
    return freeze


def _create_freeze(scope: Scope) -> Any:
    data = body(FreezeCreateSchema)
    freeze, released = calendar.create_freeze(
        scope.who.actor, organisation_id=scope.organisation_id, project_id=scope.project_id,
        starts_at=data["starts_at"], ends_at=data["ends_at"], reason=data["reason"],
        environment_ids=data["environments"])
    outbox.ring()
    return freeze.as_dict(), 201


def _update_freeze(scope: Scope, freeze_id: int) -> Any:
    if scope.project_id is None:
        _freeze(scope, freeze_id)  # the organisation changes only its own freezes
    data = body(FreezeUpdateSchema, partial=True)
    environments = data.get("environments", ...)
    freeze, released = calendar.update_freeze(
        scope.who.actor, freeze_id, organisation_id=scope.organisation_id,
        project_id=scope.project_id, expected_version=data.get("version"),
        starts_at=data.get("starts_at"), ends_at=data.get("ends_at"), reason=data.get("reason"),
        environment_ids=environments if isinstance(environments, list) else None,
        all_environments=True if environments is None else None)
    _ring(released)
    return {"freeze": freeze.as_dict(), "released": _released(released)}


def _lift_freeze(scope: Scope, freeze_id: int) -> Any:
    if scope.project_id is None:
        _freeze(scope, freeze_id)  # the organisation lifts only its own freezes
    freeze, released = calendar.lift_freeze(scope.who.actor, freeze_id,
                                            organisation_id=scope.organisation_id,
                                            project_id=scope.project_id)
    _ring(released)
    return {"freeze": freeze.as_dict(), "released": _released(released)}


@bp.get("/projects/<int:project_id>/freezes/")
@operation("A project's freezes and the organisation's (scheduled and active; "
           "?include_past=true for ended and lifted ones too)", CALENDAR,
           response=FreezeListSchema, query=PAST)
def list_project_freezes(project_id: int) -> Any:
    return _freeze_list(_project_scope(project_id))


@bp.post("/projects/<int:project_id>/freezes/")
@operation("Freeze a project from starts_at to ends_at (project admins): no stage applies "
           "into the frozen environments; flags wait with their remaining time", CALENDAR,
           body=FreezeCreateSchema, response=FreezeSchema, status=201)
def create_project_freeze(project_id: int) -> Any:
    return _create_freeze(_project_scope(project_id, "admin"))


@bp.get("/projects/<int:project_id>/freezes/<int:freeze_id>/")
@operation("One freeze of the project (or the organisation's)", CALENDAR,
           response=FreezeSchema)
def get_project_freeze(project_id: int, freeze_id: int) -> Any:
    return _freeze(_project_scope(project_id), freeze_id).as_dict()


@bp.patch("/projects/<int:project_id>/freezes/<int:freeze_id>/")
@operation("Change a freeze's period, reason or environments (project admins; 409 once it is "
           "over or when `version` is stale)", CALENDAR, body=FreezeUpdateSchema,
           response=FreezeChangeSchema)
def update_project_freeze(project_id: int, freeze_id: int) -> Any:
    return _update_freeze(_project_scope(project_id, "admin"), freeze_id)


@bp.post("/projects/<int:project_id>/freezes/<int:freeze_id>/lift/")
@operation("Lift a freeze now (project admins): its flags resume, their due work spread",
           CALENDAR, response=FreezeChangeSchema)
def lift_project_freeze(project_id: int, freeze_id: int) -> Any:
    return _lift_freeze(_project_scope(project_id, "admin"), freeze_id)


@bp.get("/organisations/<int:organisation_id>/freezes/")
@operation("The organisation-wide freezes", CALENDAR, response=FreezeListSchema,
           query=PAST)
def list_organisation_freezes(organisation_id: int) -> Any:
    return _freeze_list(_organisation_scope(organisation_id))


@bp.post("/organisations/<int:organisation_id>/freezes/")
@operation("Freeze the whole organisation (its key, site admins): every project's "
           "environments, or the environment ids given", CALENDAR, body=FreezeCreateSchema,
           response=FreezeSchema, status=201)
def create_organisation_freeze(organisation_id: int) -> Any:
    return _create_freeze(_organisation_scope(organisation_id, "admin"))


@bp.get("/organisations/<int:organisation_id>/freezes/<int:freeze_id>/")
@operation("One organisation-wide freeze", CALENDAR, response=FreezeSchema)
def get_organisation_freeze(organisation_id: int, freeze_id: int) -> Any:
    return _freeze(_organisation_scope(organisation_id), freeze_id).as_dict()


@bp.patch("/organisations/<int:organisation_id>/freezes/<int:freeze_id>/")
@operation("Change an organisation-wide freeze (its key, site admins)", CALENDAR,
           body=FreezeUpdateSchema, response=FreezeChangeSchema)
def update_organisation_freeze(organisation_id: int, freeze_id: int) -> Any:
    return _update_freeze(_organisation_scope(organisation_id, "admin"), freeze_id)


@bp.post("/organisations/<int:organisation_id>/freezes/<int:freeze_id>/lift/")
@operation("Lift an organisation-wide freeze now (its key, site admins)", CALENDAR,
           response=FreezeChangeSchema)
def lift_organisation_freeze(organisation_id: int, freeze_id: int) -> Any:
    return _lift_freeze(_organisation_scope(organisation_id, "admin"), freeze_id)


# --- Stop the line: one helper per action, for a project's line and the organisation's ----------


def _stop_state(scope: Scope) -> dict[str, Any]:
    stop = calendar.get_stop(scope.organisation_id, scope.project_id)
    if scope.project_id is not None:
        holds = calendar.holds_for_project(scope.project_id)
    else:
        own = stop
        holds = [] if own is None else [calendar.Hold(
            "stop", "organisation", None, own.stopped_by, own.reason, own.stopped_at, own.id)]
    return {"stopped": stop is not None, "stop": None if stop is None else stop.as_dict(),
            "holds": [h.as_dict() for h in holds]}


def _stop_line(scope: Scope) -> Any:
    data = body(StopBodySchema)
    stop, held = calendar.stop_line(scope.who.actor, organisation_id=scope.organisation_id,
                                    project_id=scope.project_id, reason=data["reason"])
    outbox.ring()
    return {"stop": stop.as_dict(), "held": held}, 201


def _lift_stop(scope: Scope) -> Any:
    stop, released = calendar.lift_stop(scope.who.actor, organisation_id=scope.organisation_id,
                                        project_id=scope.project_id)
    _ring(released)
    return {"stop": stop.as_dict(), "released": _released(released)}


@bp.get("/projects/<int:project_id>/stop/")
@operation("Whether the project's line is stopped, and what holds its transitions now",
           CALENDAR, response=StopStateSchema)
def get_project_stop(project_id: int) -> Any:
    return _stop_state(_project_scope(project_id))


@bp.post("/projects/<int:project_id>/stop/")
@operation("Stop the line (project admins, an incident tool's key): every transition of the "
           "project holds until lifted; 409 when stopped already", CALENDAR,
           body=StopBodySchema, response=StopResultSchema, status=201)
def stop_project_line(project_id: int) -> Any:
    return _stop_line(_project_scope(project_id, "admin"))


@bp.post("/projects/<int:project_id>/stop/lift/")
@operation("Lift the project's stop (project admins): every flag resumes where it was, its "
           "due work spread; 409 when not stopped", CALENDAR, response=LiftResultSchema)
def lift_project_stop(project_id: int) -> Any:
    return _lift_stop(_project_scope(project_id, "admin"))


@bp.get("/organisations/<int:organisation_id>/stop/")
@operation("Whether the organisation's line is stopped", CALENDAR, response=StopStateSchema)
def get_organisation_stop(organisation_id: int) -> Any:
    return _stop_state(_organisation_scope(organisation_id))


@bp.post("/organisations/<int:organisation_id>/stop/")
@operation("Stop the line for the whole organisation (its key, site admins); 409 when "
           "stopped already", CALENDAR, body=StopBodySchema, response=StopResultSchema,
           status=201)
def stop_organisation_line(organisation_id: int) -> Any:
    return _stop_line(_organisation_scope(organisation_id, "admin"))


@bp.post("/organisations/<int:organisation_id>/stop/lift/")
@operation("Lift the organisation's stop (its key, site admins); 409 when not stopped",
           CALENDAR, response=LiftResultSchema)
def lift_organisation_stop(organisation_id: int) -> Any:
    return _lift_stop(_organisation_scope(organisation_id, "admin"))
