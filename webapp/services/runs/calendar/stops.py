"""Stop the line: the switch that holds every transition of a project (or the whole
organisation) until an admin lifts it.
"""

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from webapp.clock import now as clock_now
from webapp.database import changed
from webapp.extensions import db
from webapp.models import LineStop
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.governance import audit
from webapp.services.runs.calendar.held_runs import hold_in_flight, release_hold
from webapp.services.runs.calendar.holds import stop_view
from webapp.services.runs.calendar.records import (
    EVENT_LINE_LIFTED,
    EVENT_LINE_STOPPED,
    MAX_REASON,
    Released,
    StopView,
)
from webapp.services.runs.calendar.scope import (
    notify_scope,
    project_or_404,
    require_admin,
    scope_text,
)
from webapp.services.runs.planning import start_writing


def _scope_key(organisation_id: int, project_id: int | None) -> str:
    return f"project:{project_id}" if project_id is not None else f"organisation:{organisation_id}"


def get_stop(organisation_id: int, project_id: int | None) -> StopView | None:
    """The active stop of exactly this scope (a project's own, or the organisation's)."""
    row = db.session.scalar(select(LineStop).where(
        LineStop.scope == _scope_key(organisation_id, project_id), LineStop.lifted_at.is_(None)))
    return None if row is None else stop_view(row)


def stop_history(organisation_id: int, project_id: int | None, limit: int = 20
                 ) -> list[StopView]:
    return [stop_view(s) for s in db.session.scalars(
        select(LineStop).where(LineStop.scope == _scope_key(organisation_id, project_id))
        .order_by(LineStop.id.desc()).limit(limit))]


def stop_line(actor: Actor, *, organisation_id: int, project_id: int | None, reason: str
              ) -> tuple[StopView, int]:
    """Pull the switch: every transition of the project (organisation) holds until lifted, each
    flag in flight held in place in this one transaction (RELEASE_PIPELINE_FEATURE_HELD each).
    Admins only; a reason is required; Conflict when already stopped. Audits LINE_STOPPED,
    notifies. Commits; returns the stop and how many flags it held."""
    if project_id is not None:
        project = project_or_404(project_id)
        if project.organisation_id != organisation_id:
            raise NotFound("Project not found.")
    require_admin(actor, organisation_id, project_id)
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("Invalid input.", {"reason": ["Say why the line stops."]})
    if len(reason) > MAX_REASON:
        raise Invalid("Invalid input.", {"reason": [f"At most {MAX_REASON} characters."]})
    moment = clock_now()
    start_writing()
    stop = LineStop(organisation_id=organisation_id, project_id=project_id,
                    scope=_scope_key(organisation_id, project_id), reason=reason.strip(),
                    stopped_by_id=actor.user_id, stopped_by_label=actor.label, stopped_at=moment)
    db.session.add(stop)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise Conflict("The line is stopped already.") from None
    held = hold_in_flight("stop", stop.id, organisation_id, project_id, None, moment)
    message = (f"Line stopped ({scope_text(project_id)}) by {actor.label}: {stop.reason}")
    audit.record(actor, EVENT_LINE_STOPPED,
                 f"{message} ({held} flag{'s' if held != 1 else ''} held)",
                 project_id=project_id, object_type="line_stop", object_id=stop.id,
                 object_label=stop.reason[:80], organisation_id=organisation_id,
                 idempotency_key=f"stop:{stop.id}:stopped")
    notify_scope(organisation_id, project_id, "line_stopped", message, key=f"stop:{stop.id}:on")
    db.session.commit()
    return stop_view(stop), held


def lift_stop(actor: Actor, *, organisation_id: int, project_id: int | None
              ) -> tuple[StopView, Released]:
    """Lift the switch: every flag it held resumes where it was, with the time it had left, its
    due work spread (at most release_per_second() a second, within
    release_max_spread_seconds()). Admins only; Conflict when the line is not stopped. Audits
    LINE_LIFTED and RELEASE_PIPELINE_FEATURE_RELEASED per flag; notifies. Commits; returns the
    stop and the release (bells to ring)."""
    require_admin(actor, organisation_id, project_id)
    moment = clock_now()
    start_writing()
    stop = db.session.scalar(select(LineStop).where(
        LineStop.scope == _scope_key(organisation_id, project_id), LineStop.lifted_at.is_(None)))
    if stop is None:
        db.session.rollback()
        raise Conflict("The line is not stopped.")
    lifted = changed(
        update(LineStop).where(LineStop.id == stop.id, LineStop.lifted_at.is_(None))
        .values(lifted_at=moment, lifted_by_id=actor.user_id, lifted_by_label=actor.label)
        .execution_options(synchronize_session=False))
    if lifted != 1:
        db.session.rollback()
        raise Conflict("The line is not stopped.")
    released = release_hold("stop", stop.id, moment)
    message = f"Line lifted ({scope_text(project_id)}) by {actor.label}: it was stopped for " \
              f"{stop.reason}"
    audit.record(actor, EVENT_LINE_LIFTED,
                 f"{message} ({released.resumed} flag{'s' if released.resumed != 1 else ''} "
                 "resumed)", project_id=project_id, object_type="line_stop", object_id=stop.id,
                 object_label=stop.reason[:80], organisation_id=organisation_id,
                 idempotency_key=f"stop:{stop.id}:lifted")
    notify_scope(organisation_id, project_id, "line_lifted", message, key=f"stop:{stop.id}:off")
    db.session.commit()
    db.session.refresh(stop)
    return stop_view(stop), released
