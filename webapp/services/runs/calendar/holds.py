"""Reading the calendar: what holds transitions into an environment, and until when.

`hold_at(environment_id, at)` answers with the `Hold` that forbids a stage to apply (a stopped
line > the freeze that ends last > closed windows) or None; `next_opening` with the first moment
it may. Also the banners of a project's pages and why a flag in flight waits.
"""

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import WEEKDAYS, Environment, Freeze, LineStop, PipelineStage, Project
from webapp.services.errors import NotFound
from webapp.services.runs.calendar.records import (
    FreezeView,
    Hold,
    Memo,
    StopView,
    describe_hold,
)
from webapp.services.runs.calendar.scope import environment_of
from webapp.services.runs.calendar.windows import get_schedule, next_window_opening

LOOKAHEAD_DAYS = 400  # next_opening looks this far ahead (windows + freezes) before giving up


def freeze_view(freeze: Freeze, names: dict[int, str] | None = None) -> FreezeView:
    ids = tuple(freeze.environment_ids)
    if names is None:
        names = dict(db.session.execute(
            select(Environment.id, Environment.name).where(Environment.id.in_(ids))).all()
        ) if ids else {}
    return FreezeView(
        freeze.id, freeze.organisation_id, freeze.project_id, freeze.starts_at, freeze.ends_at,
        freeze.reason, freeze.all_environments, ids,
        tuple(names.get(i, f"#{i}") for i in ids), freeze.created_by_label, freeze.created_at,
        freeze.lifted_at, freeze.lifted_by_label, freeze.version)


def stop_view(stop: LineStop) -> StopView:
    return StopView(stop.id, stop.organisation_id, stop.project_id, stop.reason,
                    stop.stopped_by_label, stop.stopped_at, stop.lifted_at, stop.lifted_by_label)


def _org_freezes(organisation_id: int, memo: Memo) -> list[FreezeView]:
    """The organisation's freezes not lifted and not yet over (any project, and org-wide)."""
    if organisation_id not in memo.freezes:
        rows = list(db.session.scalars(
            select(Freeze).where(Freeze.organisation_id == organisation_id,
                                 Freeze.lifted_at.is_(None))
            .order_by(Freeze.starts_at, Freeze.id)))
        memo.freezes[organisation_id] = [freeze_view(f, {}) for f in rows]
    return memo.freezes[organisation_id]


def _org_stops(organisation_id: int, memo: Memo) -> list[StopView]:
    if organisation_id not in memo.stops:
        memo.stops[organisation_id] = [stop_view(s) for s in db.session.scalars(
            select(LineStop).where(LineStop.organisation_id == organisation_id,
                                   LineStop.lifted_at.is_(None)).order_by(LineStop.id))]
    return memo.stops[organisation_id]


def _freeze_covers(freeze: FreezeView, project_id: int, environment_id: int) -> bool:
    if freeze.project_id is not None and freeze.project_id != project_id:
        return False
    return freeze.all_environments or environment_id in freeze.environment_ids


def stop_hold(stop: StopView) -> Hold:
    return Hold("stop", stop.scope, None, stop.stopped_by, stop.reason, stop.stopped_at, stop.id)


def freeze_hold(freeze: FreezeView, environment_name: str = "") -> Hold:
    return Hold("freeze", freeze.scope, freeze.ends_at, freeze.created_by, freeze.reason,
                freeze.starts_at, freeze.id, environment_name)


def stop_for(project_id: int, organisation_id: int, memo: Memo | None = None) -> StopView | None:
    """The active stop that holds the project: the project's own, else the organisation's."""
    stops = _org_stops(organisation_id, memo or Memo())
    own = [s for s in stops if s.project_id == project_id]
    org = [s for s in stops if s.project_id is None]
    found = own or org
    return found[0] if found else None


def hold_at(environment_id: int, at: datetime, memo: Memo | None = None, *,
            windows: bool = True) -> Hold | None:
    """What holds transitions into the environment at `at`: a stopped line, else the freeze
    that ends last, else (with `windows`) closed windows; None when a stage may apply.

    A stop is only known while it lasts: asked about a future `at`, the active stop answers."""
    memo = memo or Memo()
    project_id, organisation_id, name = environment_of(environment_id, memo)
    stop = stop_for(project_id, organisation_id, memo)
    if stop is not None:
        return stop_hold(stop)
    covering = [f for f in _org_freezes(organisation_id, memo)
                if f.starts_at <= at < f.ends_at and _freeze_covers(f, project_id, environment_id)]
    if covering:
        return freeze_hold(max(covering, key=lambda f: (f.ends_at, f.id)), name)
    if windows:
        schedule = get_schedule(environment_id, memo)
        opening = next_window_opening(schedule, at)
        if opening is None or opening > at:
            return Hold("window", "environment", opening, environment_name=name)
    return None


def is_open(environment_id: int, at: datetime, memo: Memo | None = None) -> bool:
    """Whether a stage may apply into the environment at `at`."""
    return hold_at(environment_id, at, memo) is None


def next_opening(environment_id: int, at: datetime, memo: Memo | None = None
                 ) -> datetime | None:
    """The first moment at or after `at` when a stage may apply into the environment: inside
    a window, outside every known freeze, the line not stopped. None while the line is stopped
    (it lasts until lifted) or when no window ever opens within LOOKAHEAD_DAYS."""
    memo = memo or Memo()
    moment = at
    limit = at + timedelta(days=LOOKAHEAD_DAYS)
    for _ in range(1000):
        if moment > limit:
            return None
        hold = hold_at(environment_id, moment, memo)
        if hold is None:
            return moment
        if hold.until is None:
            return None
        moment = max(hold.until, moment + timedelta(microseconds=1)) \
            if hold.until <= moment else hold.until
    return None


def holds_for_project(project_id: int, at: datetime | None = None, memo: Memo | None = None
                      ) -> list[Hold]:
    """Banners for a project's pages: the stopped line, then active freezes (who, why, until)."""
    memo = memo or Memo()
    at = at or clock_now()
    project = db.session.get(Project, project_id)
    if project is None:
        raise NotFound("Project not found.")
    holds: list[Hold] = []
    stop = stop_for(project_id, project.organisation_id, memo)
    if stop is not None:
        holds.append(stop_hold(stop))
    names = _project_environment_names(project_id)
    for freeze in _org_freezes(project.organisation_id, memo):
        if (freeze.starts_at <= at < freeze.ends_at
                and (freeze.project_id is None or freeze.project_id == project_id)):
            where = ("all environments" if freeze.all_environments else ", ".join(
                names[i] for i in freeze.environment_ids if i in names))
            holds.append(freeze_hold(freeze, where))
    return holds


def _project_environment_names(project_id: int) -> dict[int, str]:
    return dict(db.session.execute(
        select(Environment.id, Environment.name).where(Environment.project_id == project_id)
    ).all())


def next_window_text(environment_id: int, at: datetime | None = None,
                     memo: Memo | None = None) -> str | None:
    """"Production: next window Monday 09:00" (in the environment's time zone), or None when
    a stage may apply into it at `at`."""
    memo = memo or Memo()
    at = at or clock_now()
    hold = hold_at(environment_id, at, memo)
    if hold is None:
        return None
    schedule = get_schedule(environment_id, memo)
    if hold.kind == "window":
        if hold.until is None:
            return f"{schedule.environment_name}: no deployment window opens"
        local = hold.until.astimezone(ZoneInfo(schedule.timezone))
        return (f"{schedule.environment_name}: next window "
                f"{WEEKDAYS[local.weekday()]} {local:%H:%M}")
    opening = next_opening(environment_id, at, memo)
    base = f"{schedule.environment_name}: {describe_hold(hold, zone=schedule.timezone)}"
    if opening is None:
        return base
    local = opening.astimezone(ZoneInfo(schedule.timezone))
    return f"{base}; next opening {WEEKDAYS[local.weekday()]} {local:%d %b %H:%M}"


def hold_of_run(run: Any, memo: Memo | None = None) -> Hold | None:
    """Why a flag in flight waits, for its card and page: the window it waits for (until its
    due time), the freeze or stop holding it (who, why, until), or None."""
    memo = memo or Memo()
    if run.hold_kind is None or run.ended_at is not None:
        return None
    if run.hold_kind == "window":
        name = ""
        if run.stage_id is not None:
            environment_id = db.session.scalar(select(PipelineStage.environment_id).where(
                PipelineStage.id == run.stage_id))
            if environment_id is not None:
                name = environment_of(environment_id, memo)[2]
        return Hold("window", "environment", run.due_at, environment_name=name)
    if run.hold_kind == "stop" and run.hold_id is not None:
        stop = db.session.get(LineStop, run.hold_id)
        return None if stop is None else stop_hold(stop_view(stop))
    if run.hold_kind == "freeze" and run.hold_id is not None:
        freeze = db.session.get(Freeze, run.hold_id)
        return None if freeze is None else freeze_hold(freeze_view(freeze))
    return None
