"""Freezes: a project (or the whole organisation) frozen for a period, on all its
environments or some.

Admins create, change and lift them; a freeze that starts holds every flag in flight it
covers, and one that ends (or is lifted) releases them. The sweeper starts and ends freezes
whose time came (`activate_freeze`, `end_freeze`).
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, select, update

from webapp.clock import now as clock_now
from webapp.database import changed
from webapp.extensions import db
from webapp.models import Environment, Freeze, FreezeEnvironment, Project
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.governance import audit
from webapp.services.runs.calendar.held_runs import hold_in_flight, release_hold
from webapp.services.runs.calendar.holds import freeze_view
from webapp.services.runs.calendar.records import (
    EVENT_FREEZE_CREATED,
    EVENT_FREEZE_ENDED,
    EVENT_FREEZE_LIFTED,
    EVENT_FREEZE_STARTED,
    EVENT_FREEZE_UPDATED,
    MAX_REASON,
    FreezeView,
    Released,
    when_text,
)
from webapp.services.runs.calendar.scope import (
    notify_scope,
    project_or_404,
    require_admin,
    scope_text,
)
from webapp.services.runs.planning import start_writing


def list_freezes(organisation_id: int, project_id: int | None = None, *,
                 include_past: bool = False, at: datetime | None = None) -> list[FreezeView]:
    """The freezes that apply to a project (its own and the organisation's), or with
    project_id None the organisation's own; scheduled and active ones first by start, with
    `include_past` also ended and lifted ones."""
    at = at or clock_now()
    query = select(Freeze).where(Freeze.organisation_id == organisation_id)
    if project_id is None:
        query = query.where(Freeze.project_id.is_(None))
    else:
        query = query.where(or_(Freeze.project_id.is_(None), Freeze.project_id == project_id))
    if not include_past:
        query = query.where(Freeze.lifted_at.is_(None), Freeze.ends_at > at)
    rows = list(db.session.scalars(query.order_by(Freeze.starts_at, Freeze.id)))
    ids = {e.environment_id for f in rows for e in f.environments}
    names = dict(db.session.execute(select(Environment.id, Environment.name).where(
        Environment.id.in_(ids))).all()) if ids else {}
    return [freeze_view(f, names) for f in rows]


def get_freeze(freeze_id: int, *, organisation_id: int, project_id: int | None = None
               ) -> FreezeView:
    """One freeze of the organisation (of the project, when given: its own or org-wide)."""
    return freeze_view(_freeze_row(freeze_id, organisation_id, project_id))


def _freeze_row(freeze_id: int, organisation_id: int, project_id: int | None) -> Freeze:
    freeze = db.session.get(Freeze, freeze_id) if 0 < freeze_id < 2**31 else None
    if freeze is None or freeze.organisation_id != organisation_id or (
            project_id is not None and freeze.project_id not in (None, project_id)):
        raise NotFound("Freeze not found.")
    return freeze


def _check_freeze_input(organisation_id: int, project_id: int | None, starts_at: datetime,
                        ends_at: datetime, reason: str, environment_ids: Sequence[int] | None
                        ) -> list[int]:
    errors: dict[str, list[str]] = {}
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        errors["starts_at"] = ["Give times with a time zone (UTC: a trailing Z)."]
    elif ends_at <= starts_at:
        errors["ends_at"] = ["A freeze ends after it starts."]
    if not isinstance(reason, str) or not reason.strip():
        errors["reason"] = ["Say why (people see it on every board while frozen)."]
    elif len(reason) > MAX_REASON:
        errors["reason"] = [f"At most {MAX_REASON} characters."]
    ids: list[int] = []
    if environment_ids is not None:
        if (not isinstance(environment_ids, (list, tuple)) or not environment_ids
                or not all(isinstance(i, int) and not isinstance(i, bool) and 0 < i < 2**31
                           for i in environment_ids)):
            errors["environments"] = ["Environment ids (omit for all environments)."]
        else:
            ids = sorted(set(environment_ids))
            query = select(Environment.id).join(Project, Project.id == Environment.project_id) \
                .where(Environment.id.in_(ids), Project.organisation_id == organisation_id)
            if project_id is not None:
                query = query.where(Environment.project_id == project_id)
            found = set(db.session.scalars(query))
            missing = [i for i in ids if i not in found]
            if missing:
                errors["environments"] = [
                    f"Not environments of this {'project' if project_id else 'organisation'}: "
                    f"{', '.join(map(str, missing))}."]
    if errors:
        raise Invalid("Invalid input.", errors)
    return ids


def create_freeze(actor: Actor, *, organisation_id: int, project_id: int | None,
                  starts_at: datetime, ends_at: datetime, reason: str,
                  environment_ids: Sequence[int] | None = None) -> tuple[FreezeView, Released]:
    """Freeze a project (or, with project_id None, the organisation) from `starts_at` to
    `ends_at`: all its environments, or those listed. Admins only. Audits FREEZE_CREATED; a
    freeze that has started already holds the flags in flight at once (FREEZE_STARTED, a
    notification, RELEASE_PIPELINE_FEATURE_HELD per flag). Commits; returns the freeze and the
    (empty) release report."""
    if project_id is not None:
        project = project_or_404(project_id)
        if project.organisation_id != organisation_id:
            raise NotFound("Project not found.")
    require_admin(actor, organisation_id, project_id)
    ids = _check_freeze_input(organisation_id, project_id, starts_at, ends_at, reason,
                              environment_ids)
    moment = clock_now()
    if ends_at <= moment:
        raise Invalid("Invalid input.", {"ends_at": ["That is in the past."]})
    start_writing()
    freeze = Freeze(organisation_id=organisation_id, project_id=project_id,
                    starts_at=starts_at, ends_at=ends_at, reason=reason.strip(),
                    all_environments=environment_ids is None, created_by_id=actor.user_id,
                    created_by_label=actor.label, created_at=moment, updated_at=moment)
    freeze.environments = [FreezeEnvironment(environment_id=i) for i in ids]
    db.session.add(freeze)
    db.session.flush()
    view = freeze_view(freeze)
    audit.record(actor, EVENT_FREEZE_CREATED,
                 f"Freeze from {when_text(starts_at)} to {when_text(ends_at)} on "
                 f"{view.environments_text} ({scope_text(project_id)}): {view.reason}",
                 project_id=project_id, object_type="freeze", object_id=freeze.id,
                 object_label=view.reason[:80], after=view.as_dict(moment),
                 organisation_id=organisation_id,
                 idempotency_key=f"freeze:{freeze.id}:created")
    released = Released()
    if starts_at <= moment < ends_at:
        activate_freeze(freeze, moment)
    db.session.commit()
    return freeze_view(freeze), released


def update_freeze(actor: Actor, freeze_id: int, *, organisation_id: int,
                  project_id: int | None, expected_version: int | None = None,
                  starts_at: datetime | None = None, ends_at: datetime | None = None,
                  reason: str | None = None, environment_ids: Sequence[int] | None = None,
                  all_environments: bool | None = None) -> tuple[FreezeView, Released]:
    """Change a freeze's period, reason or environments. Admins only; a lifted or ended freeze
    cannot change (Conflict), nor a stale version. Audits FREEZE_UPDATED with before and after.
    Flags held by it that it no longer covers are released; flags it now covers are held.
    Commits; returns the freeze and what was released (bells to ring)."""
    freeze = _freeze_row(freeze_id, organisation_id, project_id)
    require_admin(actor, organisation_id, freeze.project_id)
    moment = clock_now()
    if freeze.lifted_at is not None or freeze.ends_at <= moment:
        raise Conflict("This freeze is over; create a new one.")
    if expected_version is not None and expected_version != freeze.version:
        raise Conflict("Someone changed this freeze meanwhile; look again.")
    before = freeze_view(freeze)
    new_starts = starts_at or freeze.starts_at
    new_ends = ends_at or freeze.ends_at
    new_reason = freeze.reason if reason is None else reason
    if all_environments:
        new_ids: Sequence[int] | None = None
    elif environment_ids is not None:
        new_ids = environment_ids
    else:
        new_ids = None if freeze.all_environments else before.environment_ids
    if freeze.starts_at <= moment and new_starts != freeze.starts_at and new_starts > moment:
        pass  # moving an active freeze's start into the future ends it for now (released below)
    ids = _check_freeze_input(organisation_id, freeze.project_id, new_starts, new_ends,
                              new_reason, new_ids)
    if new_ends <= moment:
        raise Invalid("Invalid input.", {"ends_at": [
            "That is in the past: lift the freeze to end it now."]})
    start_writing()
    freeze = _freeze_row(freeze_id, organisation_id, project_id)
    if freeze.version != before.version:
        raise Conflict("Someone changed this freeze meanwhile; look again.")
    freeze.starts_at, freeze.ends_at, freeze.reason = new_starts, new_ends, new_reason.strip()
    freeze.all_environments = new_ids is None
    freeze.environments = [FreezeEnvironment(environment_id=i) for i in ids]
    freeze.updated_at = moment
    freeze.version = before.version + 1
    db.session.flush()
    after = freeze_view(freeze)
    audit.record(actor, EVENT_FREEZE_UPDATED,
                 f"Freeze changed: {when_text(after.starts_at)} to {when_text(after.ends_at)} "
                 f"on {after.environments_text}: {after.reason}",
                 project_id=freeze.project_id, object_type="freeze", object_id=freeze.id,
                 object_label=after.reason[:80], before=before.as_dict(moment),
                 after=after.as_dict(moment), organisation_id=organisation_id,
                 idempotency_key=f"freeze:{freeze.id}:updated:v{after.version}")
    active = freeze.starts_at <= moment < freeze.ends_at
    if not active and freeze.activated_at is not None:
        freeze.activated_at = None  # it starts again later: the sweeper activates it then
    released = release_hold("freeze", freeze.id, moment)
    if active and freeze.activated_at is None:
        activate_freeze(freeze, moment)  # it starts now: hold, announce
    elif active:  # it goes on: flags in environments it now covers are held too
        hold_in_flight("freeze", freeze.id, organisation_id, freeze.project_id,
                       None if freeze.all_environments else ids, moment)
    db.session.commit()
    return after, released


def lift_freeze(actor: Actor, freeze_id: int, *, organisation_id: int,
                project_id: int | None) -> tuple[FreezeView, Released]:
    """End a freeze now (or cancel a scheduled one). Admins only; Conflict when it is over.
    Audits FREEZE_LIFTED; flags it held resume with the time they had left, spread out
    (RELEASE_PIPELINE_FEATURE_RELEASED each); people hear the freeze ended. Commits; returns the
    freeze and the release (bells to ring)."""
    freeze = _freeze_row(freeze_id, organisation_id, project_id)
    require_admin(actor, organisation_id, freeze.project_id)
    moment = clock_now()
    if freeze.lifted_at is not None or freeze.ends_at <= moment:
        raise Conflict("This freeze is over already.")
    start_writing()
    lifted = changed(
        update(Freeze).where(Freeze.id == freeze_id, Freeze.lifted_at.is_(None))
        .values(lifted_at=moment, lifted_by_id=actor.user_id, lifted_by_label=actor.label,
                version=Freeze.version + 1)
        .execution_options(synchronize_session=False))
    if lifted != 1:
        db.session.rollback()
        raise Conflict("This freeze is over already.")
    freeze = _freeze_row(freeze_id, organisation_id, project_id)
    db.session.refresh(freeze)
    view = freeze_view(freeze)
    audit.record(actor, EVENT_FREEZE_LIFTED,
                 f"Freeze lifted by {actor.label}: {view.reason}", project_id=freeze.project_id,
                 object_type="freeze", object_id=freeze.id, object_label=view.reason[:80],
                 organisation_id=organisation_id, idempotency_key=f"freeze:{freeze.id}:lifted")
    released = end_freeze(freeze, moment) if freeze.activated_at is not None else \
        release_hold("freeze", freeze.id, moment)
    db.session.commit()
    return view, released


def activate_freeze(freeze: Freeze, moment: datetime) -> int:
    """The freeze started: hold its flags in flight, announce it (once: compare-and-set on
    activated_at). In the caller's transaction; returns how many flags it held."""
    claimed = changed(
        update(Freeze).where(Freeze.id == freeze.id, Freeze.activated_at.is_(None),
                             Freeze.lifted_at.is_(None))
        .values(activated_at=moment, released_at=None)
        .execution_options(synchronize_session=False))
    if claimed != 1:
        return 0
    view = freeze_view(freeze)
    environment_ids = None if view.all_environments else list(view.environment_ids)
    held = hold_in_flight("freeze", freeze.id, freeze.organisation_id, freeze.project_id,
                          environment_ids, moment)
    message = (f"Freeze started on {view.environments_text} ({scope_text(freeze.project_id)}) "
               f"until {when_text(view.ends_at)}, by {view.created_by}: {view.reason}")
    audit.record(Actor("system", "Release calendar"), EVENT_FREEZE_STARTED,
                 f"{message} ({held} flag{'s' if held != 1 else ''} held)",
                 project_id=freeze.project_id, object_type="freeze", object_id=freeze.id,
                 object_label=view.reason[:80], organisation_id=freeze.organisation_id,
                 idempotency_key=f"freeze:{freeze.id}:started:v{view.version}")
    notify_scope(freeze.organisation_id, freeze.project_id, "freeze_started", message,
                 key=f"freeze:{freeze.id}:started:v{view.version}")
    return held


def end_freeze(freeze: Freeze, moment: datetime) -> Released:
    """The freeze ended or was lifted: release its flags, announce it (once)."""
    claimed = changed(
        update(Freeze).where(Freeze.id == freeze.id, Freeze.released_at.is_(None))
        .values(released_at=moment).execution_options(synchronize_session=False))
    released = release_hold("freeze", freeze.id, moment)
    if claimed != 1:
        return released
    view = freeze_view(freeze)
    how = f"lifted by {view.lifted_by}" if view.lifted_at is not None else "ended"
    message = (f"Freeze {how} on {view.environments_text} ({scope_text(freeze.project_id)}): "
               f"{view.reason}")
    audit.record(Actor("system", "Release calendar"), EVENT_FREEZE_ENDED,
                 f"{message} ({released.resumed} flag{'s' if released.resumed != 1 else ''} "
                 "resumed)", project_id=freeze.project_id, object_type="freeze",
                 object_id=freeze.id, object_label=view.reason[:80],
                 organisation_id=freeze.organisation_id,
                 idempotency_key=f"freeze:{freeze.id}:ended:v{view.version}")
    notify_scope(freeze.organisation_id, freeze.project_id, "freeze_ended", message,
                 key=f"freeze:{freeze.id}:ended:v{view.version}")
    return released
