"""The release calendar: deployment windows, freezes and the stop-the-line switch.

When may a stage apply into an environment? `hold_at(environment_id, at)` answers with the
`Hold` that forbids it (stop > freeze > window) or None; `next_opening` with the first moment it
may. The engine asks `hold_due_run` / `hold_batch` before it applies anything (see
runs/transition.py and runs/sweep.py): a run due outside its environment's windows waits to the
next opening (its `due_at` moved, no busy loop); a run due during a freeze or a stopped line is
held in place (due_at NULL, its clock kept in `held_due_at` / `held_since`) and released, with the
time it had left, when the freeze ends or the line is lifted.

The database is the truth: holds and releases are compare-and-sets on the run's `version` in
the transaction that decides them; the sweeper's `tick` starts and ends freezes whose time came
and releases any run whose hold is no longer active, so a flushed Redis or a killed worker loses
nothing. Releasing many runs spreads their due work (`spread_due_times`): at most
`release_per_second()` per second, all within `release_max_spread_seconds()`.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask import current_app, has_app_context
from sqlalchemy import and_, bindparam, case, or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError

from webapp.clock import now as clock_now
from webapp.database import begin_immediate
from webapp.extensions import db
from webapp.models import (
    WEEKDAYS,
    DeploymentWindow,
    Environment,
    EnvironmentSchedule,
    Feature,
    Freeze,
    FreezeEnvironment,
    LineStop,
    Membership,
    PipelineRun,
    PipelineStage,
    Project,
    ReleasePipeline,
    User,
)
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Forbidden, Invalid, NotFound
from webapp.services.governance import audit, notifications
from webapp.services.platform import access
from webapp.services.runs.planning import LEASE_GRACE, Bell

HoldKind = Literal["window", "freeze", "stop"]
# Statuses whose transitions the calendar holds (engine.ADVANCEABLE; repeated to avoid a cycle).
HELD_STATUSES = ("waiting", "rolling_out", "watching")
# Run columns that say "not held": merged into every compare-and-set that moves a run on.
NO_HOLD: dict[str, Any] = {"hold_kind": None, "hold_id": None, "held_since": None,
                           "held_due_at": None}
DEFAULT_RELEASE_PER_SECOND = 50
DEFAULT_RELEASE_MAX_SPREAD_SECONDS = 300
MAX_WINDOWS = 70
MAX_REASON = 2000
LOOKAHEAD_DAYS = 400  # next_opening looks this far ahead (windows + freezes) before giving up
CHUNK = 2000  # ids per IN (...) list (SQLite binds at most 32766 parameters)

EVENT_WINDOWS = "DEPLOYMENT_WINDOWS_UPDATED"
EVENT_FREEZE_CREATED = "FREEZE_CREATED"
EVENT_FREEZE_UPDATED = "FREEZE_UPDATED"
EVENT_FREEZE_LIFTED = "FREEZE_LIFTED"
EVENT_FREEZE_STARTED = "FREEZE_STARTED"
EVENT_FREEZE_ENDED = "FREEZE_ENDED"
EVENT_LINE_STOPPED = "LINE_STOPPED"
EVENT_LINE_LIFTED = "LINE_LIFTED"
EVENT_HELD = "RELEASE_PIPELINE_FEATURE_HELD"
EVENT_RELEASED = "RELEASE_PIPELINE_FEATURE_RELEASED"
EVENT_BREAK_GLASS = "CHANGE_REQUEST_BREAK_GLASS"
EVENT_TYPES = (EVENT_WINDOWS, EVENT_FREEZE_CREATED, EVENT_FREEZE_UPDATED, EVENT_FREEZE_LIFTED,
               EVENT_FREEZE_STARTED, EVENT_FREEZE_ENDED, EVENT_LINE_STOPPED, EVENT_LINE_LIFTED,
               EVENT_HELD, EVENT_RELEASED, EVENT_BREAK_GLASS)


# --- What the screens and the API read ------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Weekly opening hours: `weekday` 0 = Monday, minutes after local midnight."""

    weekday: int
    opens_minute: int
    closes_minute: int

    @property
    def text(self) -> str:
        return f"{WEEKDAYS[self.weekday]} {hhmm(self.opens_minute)}–{hhmm(self.closes_minute)}"

    def as_dict(self) -> dict[str, Any]:
        return {"weekday": self.weekday, "day": WEEKDAYS[self.weekday],
                "opens": hhmm(self.opens_minute), "closes": hhmm(self.closes_minute)}


@dataclass(frozen=True)
class Schedule:
    """An environment's deployment windows (none: always open) in its time zone."""

    environment_id: int
    environment_name: str
    timezone: str
    windows: tuple[Window, ...]

    @property
    def always_open(self) -> bool:
        return not self.windows

    def as_dict(self) -> dict[str, Any]:
        return {"environment_id": self.environment_id, "environment": self.environment_name,
                "timezone": self.timezone, "windows": [w.as_dict() for w in self.windows]}


@dataclass(frozen=True)
class Hold:
    """Why transitions into an environment wait: a closed window, a freeze, a stopped line.

    `until` is when it ends if known (the next opening, the freeze's end; None for a stopped
    line, which lasts until lifted). `who`/`why`/`since` name the person, reason and start of a
    freeze or stop (a window has none). `source_id` is the freeze's or stop's id."""

    kind: HoldKind
    scope: Literal["environment", "project", "organisation"]
    until: datetime | None
    who: str = ""
    why: str = ""
    since: datetime | None = None
    source_id: int | None = None
    environment_name: str = ""

    @property
    def text(self) -> str:
        """One line for a banner or an audit entry."""
        return describe_hold(self)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "scope": self.scope, "id": self.source_id, "who": self.who,
                "why": self.why, "since": iso(self.since), "until": iso(self.until),
                "text": self.text}


@dataclass(frozen=True)
class FreezeView:
    id: int
    organisation_id: int
    project_id: int | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    all_environments: bool
    environment_ids: tuple[int, ...]
    environment_names: tuple[str, ...]
    created_by: str
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None
    version: int

    def state(self, at: datetime) -> Literal["scheduled", "active", "ended", "lifted"]:
        if self.lifted_at is not None:
            return "lifted"
        if at < self.starts_at:
            return "scheduled"
        return "active" if at < self.ends_at else "ended"

    @property
    def scope(self) -> Literal["project", "organisation"]:
        return "organisation" if self.project_id is None else "project"

    @property
    def environments_text(self) -> str:
        return "all environments" if self.all_environments else ", ".join(self.environment_names)

    def as_dict(self, at: datetime | None = None) -> dict[str, Any]:
        return {"id": self.id, "scope": self.scope, "organisation_id": self.organisation_id,
                "project_id": self.project_id, "starts_at": iso(self.starts_at),
                "ends_at": iso(self.ends_at), "reason": self.reason,
                "all_environments": self.all_environments,
                "environments": list(self.environment_ids), "created_by": self.created_by,
                "created_at": iso(self.created_at), "lifted_at": iso(self.lifted_at),
                "lifted_by": self.lifted_by, "version": self.version,
                "state": self.state(at or clock_now())}


@dataclass(frozen=True)
class StopView:
    id: int
    organisation_id: int
    project_id: int | None
    reason: str
    stopped_by: str
    stopped_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None

    @property
    def scope(self) -> Literal["project", "organisation"]:
        return "organisation" if self.project_id is None else "project"

    @property
    def active(self) -> bool:
        return self.lifted_at is None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "scope": self.scope, "organisation_id": self.organisation_id,
                "project_id": self.project_id, "reason": self.reason,
                "stopped_by": self.stopped_by, "stopped_at": iso(self.stopped_at),
                "lifted_at": iso(self.lifted_at), "lifted_by": self.lifted_by,
                "active": self.active}


@dataclass
class Released:
    """What a lift or a freeze's end did: runs resumed (their bells to ring), runs still held by
    another freeze or stop, and the spread of their due times."""

    resumed: int = 0
    still_held: int = 0
    first_due: datetime | None = None
    last_due: datetime | None = None
    bells: list[Any] = field(default_factory=list)  # engine.Bell (typed Any: no import cycle)


# --- Small helpers --------------------------------------------------------------------------------


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a trailing Z (None stays None)."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_hhmm(text: str, *, closing: bool = False) -> int:
    """"09:30" → 570; "24:00" only as a closing time. Raises ValueError."""
    parts = text.strip().split(":") if isinstance(text, str) else []
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) == 2 for p in parts):
        raise ValueError("Use HH:MM, for example 09:00.")
    hours, minutes = int(parts[0]), int(parts[1])
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not closing)):
        raise ValueError("Not a time of day (00:00–23:59, or 24:00 to close at midnight).")
    return hours * 60 + minutes


def valid_timezone(name: str) -> bool:
    if not isinstance(name, str) or not name or len(name) > 64:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def timezone_names() -> list[str]:
    """IANA names for a picker."""
    return sorted(available_timezones())


def release_per_second() -> int:
    value = current_app.config.get("CALENDAR_RELEASE_PER_SECOND") if has_app_context() else None
    return int(value or DEFAULT_RELEASE_PER_SECOND)


def release_max_spread_seconds() -> int:
    value = (current_app.config.get("CALENDAR_RELEASE_MAX_SPREAD_SECONDS")
             if has_app_context() else None)
    return int(value or DEFAULT_RELEASE_MAX_SPREAD_SECONDS)


# --- Windows: wall-clock hours to instants (zoneinfo) ---------------------------------------------


def _local_to_utc(day: datetime, minute: int, zone: ZoneInfo, *, earliest: bool) -> datetime:
    """The instant a wall clock in `zone` shows `day` + `minute`.

    A time skipped by a spring-forward jump opens at the jump (the first instant the wall clock
    is past it); a time that occurs twice (fall back) is its first occurrence when `earliest`,
    else its second (a window is open as long as either reading allows)."""
    naive = day.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None) + timedelta(
        minutes=minute)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    exists = first.astimezone(zone).replace(tzinfo=None) == naive
    if exists:
        return first if earliest or first == second else max(first, second)
    # Skipped: find the jump between the two readings (to the second).
    low, high = min(first, second), max(first, second)
    while (high - low) > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= naive:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0)


def window_intervals(schedule: Schedule, start: datetime, end: datetime
                     ) -> list[tuple[datetime, datetime]]:
    """The schedule's open intervals (UTC, merged, sorted) that overlap [start, end)."""
    if not schedule.windows:
        return [(start, end)]
    zone = ZoneInfo(schedule.timezone)
    first_day = start.astimezone(zone) - timedelta(days=1)
    days = (end - start).days + 3
    spans: list[tuple[datetime, datetime]] = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        for window in schedule.windows:
            if window.weekday != day.weekday():
                continue
            opens = _local_to_utc(day, window.opens_minute, zone, earliest=True)
            closes = _local_to_utc(day, window.closes_minute, zone, earliest=False)
            if closes > opens and closes > start and opens < end:
                spans.append((opens, closes))
    spans.sort()
    merged: list[tuple[datetime, datetime]] = []
    for opens, closes in spans:
        if merged and opens <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
        else:
            merged.append((opens, closes))
    return merged


def next_window_opening(schedule: Schedule, at: datetime) -> datetime | None:
    """`at` when the windows are open then, else the next opening (None: no windows at all
    would be always open, so None only when no window ever opens)."""
    if not schedule.windows:
        return at
    horizon = at
    for _ in range(3):  # a week of windows is always found within 8 days
        spans = window_intervals(schedule, horizon, horizon + timedelta(days=8))
        for opens, closes in spans:
            if closes > at:
                return max(opens, at)
        horizon += timedelta(days=8)
    return None


def window_closes_at(schedule: Schedule, at: datetime) -> datetime | None:
    """When the window open at `at` closes (None when always open or closed at `at`)."""
    if not schedule.windows:
        return None
    for opens, closes in window_intervals(schedule, at, at + timedelta(days=2)):
        if opens <= at < closes:
            return closes
    return None


# --- Reading the calendar -------------------------------------------------------------------------


@dataclass
class Memo:
    """Per-call memo of schedules, freezes and stops (one engine batch, one sweep, one page)."""

    schedules: dict[int, Schedule] = field(default_factory=dict)
    environments: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    freezes: dict[int, list[FreezeView]] = field(default_factory=dict)  # by organisation
    stops: dict[int, list[StopView]] = field(default_factory=dict)  # by organisation

    def fresh(self) -> None:
        """Forget freezes and stops (read again in the next transaction); keep schedules."""
        self.freezes.clear()
        self.stops.clear()


def _environment(environment_id: int, memo: Memo) -> tuple[int, int, str]:
    """(project id, organisation id, name) of an environment."""
    if environment_id not in memo.environments:
        row = db.session.execute(
            select(Environment.project_id, Project.organisation_id, Environment.name)
            .join(Project, Project.id == Environment.project_id)
            .where(Environment.id == environment_id)).first()
        if row is None:
            raise NotFound("Environment not found.")
        memo.environments[environment_id] = (row[0], row[1], row[2])
    return memo.environments[environment_id]


def get_schedule(environment_id: int, memo: Memo | None = None) -> Schedule:
    """The environment's time zone and windows (always open when it has none)."""
    memo = memo or Memo()
    if environment_id not in memo.schedules:
        _, _, name = _environment(environment_id, memo)
        row = db.session.get(EnvironmentSchedule, environment_id)
        windows: tuple[Window, ...] = ()
        timezone = "UTC"
        if row is not None:
            timezone = row.timezone
            windows = tuple(sorted(
                (Window(w.weekday, w.opens_minute, w.closes_minute) for w in row.windows),
                key=lambda w: (w.weekday, w.opens_minute)))
        memo.schedules[environment_id] = Schedule(environment_id, name, timezone, windows)
    return memo.schedules[environment_id]


def _freeze_view(freeze: Freeze, names: dict[int, str] | None = None) -> FreezeView:
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


def _stop_view(stop: LineStop) -> StopView:
    return StopView(stop.id, stop.organisation_id, stop.project_id, stop.reason,
                    stop.stopped_by_label, stop.stopped_at, stop.lifted_at, stop.lifted_by_label)


def _org_freezes(organisation_id: int, memo: Memo) -> list[FreezeView]:
    """The organisation's freezes not lifted and not yet over (any project, and org-wide)."""
    if organisation_id not in memo.freezes:
        rows = list(db.session.scalars(
            select(Freeze).where(Freeze.organisation_id == organisation_id,
                                 Freeze.lifted_at.is_(None))
            .order_by(Freeze.starts_at, Freeze.id)))
        memo.freezes[organisation_id] = [_freeze_view(f, {}) for f in rows]
    return memo.freezes[organisation_id]


def _org_stops(organisation_id: int, memo: Memo) -> list[StopView]:
    if organisation_id not in memo.stops:
        memo.stops[organisation_id] = [_stop_view(s) for s in db.session.scalars(
            select(LineStop).where(LineStop.organisation_id == organisation_id,
                                   LineStop.lifted_at.is_(None)).order_by(LineStop.id))]
    return memo.stops[organisation_id]


def _freeze_covers(freeze: FreezeView, project_id: int, environment_id: int) -> bool:
    if freeze.project_id is not None and freeze.project_id != project_id:
        return False
    return freeze.all_environments or environment_id in freeze.environment_ids


def _stop_hold(stop: StopView) -> Hold:
    return Hold("stop", stop.scope, None, stop.stopped_by, stop.reason, stop.stopped_at, stop.id)


def _freeze_hold(freeze: FreezeView, environment_name: str = "") -> Hold:
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
    project_id, organisation_id, name = _environment(environment_id, memo)
    stop = stop_for(project_id, organisation_id, memo)
    if stop is not None:
        return _stop_hold(stop)
    covering = [f for f in _org_freezes(organisation_id, memo)
                if f.starts_at <= at < f.ends_at and _freeze_covers(f, project_id, environment_id)]
    if covering:
        return _freeze_hold(max(covering, key=lambda f: (f.ends_at, f.id)), name)
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
        holds.append(_stop_hold(stop))
    names = _project_environment_names(project_id)
    for freeze in _org_freezes(project.organisation_id, memo):
        if (freeze.starts_at <= at < freeze.ends_at
                and (freeze.project_id is None or freeze.project_id == project_id)):
            where = ("all environments" if freeze.all_environments else ", ".join(
                names[i] for i in freeze.environment_ids if i in names))
            holds.append(_freeze_hold(freeze, where))
    return holds


def _project_environment_names(project_id: int) -> dict[int, str]:
    return dict(db.session.execute(
        select(Environment.id, Environment.name).where(Environment.project_id == project_id)
    ).all())


def describe_hold(hold: Hold, *, zone: str = "UTC") -> str:
    """"Line stopped by ana@example.com: incident 42", "Frozen until 3 Jan 00:00 UTC by …:
    holidays", "Production: next window Monday 09:00"."""
    if hold.kind == "stop":
        scope = "for the organisation" if hold.scope == "organisation" else ""
        text = f"Line stopped {scope} by {hold.who}".replace("  ", " ")
        return f"{text}: {hold.why}" if hold.why else text
    if hold.kind == "freeze":
        where = f" ({hold.environment_name})" if hold.environment_name else ""
        until = f" until {when_text(hold.until, zone)}" if hold.until else ""
        text = f"Frozen{where}{until} by {hold.who}"
        return f"{text}: {hold.why}" if hold.why else text
    prefix = f"{hold.environment_name}: " if hold.environment_name else ""
    if hold.until is None:
        return f"{prefix}no deployment window opens"
    return f"{prefix}next window {when_text(hold.until, zone)}"


def when_text(moment: datetime, zone: str = "UTC") -> str:
    """"Monday 09:00" in the given zone (with the zone's name unless it is UTC-less wording)."""
    local = moment.astimezone(ZoneInfo(zone))
    text = f"{WEEKDAYS[local.weekday()]} {local:%d %b %H:%M}"
    return text if zone != "UTC" else f"{text} UTC"


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


# --- Permissions ----------------------------------------------------------------------------------


def _actor_user(actor: Actor) -> User | None:
    return db.session.get(User, actor.user_id) if actor.user_id is not None else None


def may_administer(actor: Actor, organisation_id: int, project_id: int | None) -> bool:
    """Admins only: a project's admins for the project; site admins (and the organisation's
    API key) for the organisation, and for every project of it."""
    if actor.kind == "system":
        return True
    if actor.kind == "api_key" and actor.user_id is None:
        return actor.organisation_id == organisation_id
    user = _actor_user(actor)
    if user is None:
        return False
    if user.is_site_admin:
        return True
    if project_id is None:
        return False
    return access.role_in(user, project_id) == "admin"


def _require_admin(actor: Actor, organisation_id: int, project_id: int | None) -> None:
    if not may_administer(actor, organisation_id, project_id):
        if project_id is None:
            raise Forbidden("Only site admins change the organisation's release calendar.")
        raise Forbidden("Only admins change the release calendar.")


def _project(project_id: int) -> Project:
    project = db.session.get(Project, project_id) if 0 < project_id < 2**31 else None
    if project is None:
        raise NotFound("Project not found.")
    return project


# --- Windows --------------------------------------------------------------------------------------


def parse_windows(items: Sequence[dict[str, Any]]) -> list[Window]:
    """Windows from API/form input: [{"weekday": 0..6 or "Monday", "opens": "09:00",
    "closes": "16:00"}]. Raises Invalid naming the bad item."""
    if not isinstance(items, (list, tuple)):
        raise Invalid("Invalid input.", {"windows": ["A list of windows."]})
    if len(items) > MAX_WINDOWS:
        raise Invalid("Invalid input.", {"windows": [f"At most {MAX_WINDOWS} windows."]})
    windows: list[Window] = []
    for index, item in enumerate(items):
        key = f"windows.{index}"
        if not isinstance(item, dict):
            raise Invalid("Invalid input.", {key: ["A window is an object."]})
        day = item.get("weekday")
        if isinstance(day, str) and day.capitalize() in WEEKDAYS:
            day = WEEKDAYS.index(day.capitalize())
        if isinstance(day, bool) or not isinstance(day, int) or not 0 <= day <= 6:
            raise Invalid("Invalid input.", {f"{key}.weekday": [
                "A weekday: 0 (Monday) to 6 (Sunday), or its English name."]})
        try:
            opens = parse_hhmm(item.get("opens", ""))
        except ValueError as error:
            raise Invalid("Invalid input.", {f"{key}.opens": [str(error)]}) from None
        try:
            closes = parse_hhmm(item.get("closes", ""), closing=True)
        except ValueError as error:
            raise Invalid("Invalid input.", {f"{key}.closes": [str(error)]}) from None
        if closes <= opens:
            raise Invalid("Invalid input.", {f"{key}.closes": [
                "A window closes after it opens (use two windows to span midnight)."]})
        windows.append(Window(day, opens, closes))
    windows.sort(key=lambda w: (w.weekday, w.opens_minute))
    for a, b in zip(windows, windows[1:], strict=False):
        if a.weekday == b.weekday and b.opens_minute < a.closes_minute:
            raise Invalid("Invalid input.", {"windows": [
                f"Windows overlap on {WEEKDAYS[a.weekday]}: {a.text} and {b.text}."]})
    return windows


def set_windows(environment_id: int, timezone: str, windows: Sequence[Window], actor: Actor
                ) -> Schedule:
    """Replace the environment's deployment windows and time zone (no windows: always open).

    Admins only (Forbidden). Invalid for an unknown time zone. Audits DEPLOYMENT_WINDOWS_UPDATED
    with before and after. Commits. Runs already waiting for a window keep their time: each is
    looked at again when it falls due."""
    environment = db.session.get(Environment, environment_id) if 0 < environment_id < 2**31 \
        else None
    if environment is None:
        raise NotFound("Environment not found.")
    project = _project(environment.project_id)
    _require_admin(actor, project.organisation_id, project.id)
    if not valid_timezone(timezone):
        raise Invalid("Invalid input.", {"timezone": [
            "An IANA time zone, for example Europe/Berlin."]})
    before = get_schedule(environment_id)
    start_writing()
    row = db.session.get(EnvironmentSchedule, environment_id)
    if row is None:
        row = EnvironmentSchedule(environment_id=environment_id)
        db.session.add(row)
    row.timezone = timezone
    row.updated_by_id = actor.user_id
    row.updated_at = clock_now()
    row.windows = [DeploymentWindow(weekday=w.weekday, opens_minute=w.opens_minute,
                                    closes_minute=w.closes_minute) for w in windows]
    after = Schedule(environment_id, environment.name, timezone, tuple(
        sorted(windows, key=lambda w: (w.weekday, w.opens_minute))))
    summary = ("always open" if not windows
               else "; ".join(w.text for w in after.windows) + f" ({timezone})")
    # Runs waiting for this environment's windows are looked at again now (the engine holds
    # them to the new next opening, or applies them if it is open).
    table = PipelineRun.__table__
    db.session.execute(
        table.update().where(
            table.c.hold_kind == "window", table.c.ended_at.is_(None),
            table.c.stage_id.in_(select(PipelineStage.id).where(
                PipelineStage.environment_id == environment_id)))
        .values(due_at=clock_now(), version=table.c.version + 1))
    audit.record(actor, EVENT_WINDOWS,
                 f"Deployment windows of {environment.name} set: {summary}",
                 project_id=project.id, environment_id=environment_id,
                 object_type="environment", object_id=environment_id,
                 object_label=environment.name, before=before.as_dict(), after=after.as_dict(),
                 organisation_id=project.organisation_id)
    db.session.commit()
    return after


def _rowcount(result: Any) -> int:
    """How many rows an UPDATE changed (its CursorResult's rowcount)."""
    return int(result.rowcount)


def start_writing() -> None:
    """Begin a unit of work holding the writer lock (SQLite; a no-op begin on PostgreSQL)."""
    db.session.rollback()
    begin_immediate()


# --- Freezes --------------------------------------------------------------------------------------


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
    return [_freeze_view(f, names) for f in rows]


def get_freeze(freeze_id: int, *, organisation_id: int, project_id: int | None = None
               ) -> FreezeView:
    """One freeze of the organisation (of the project, when given: its own or org-wide)."""
    return _freeze_view(_freeze_row(freeze_id, organisation_id, project_id))


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
        project = _project(project_id)
        if project.organisation_id != organisation_id:
            raise NotFound("Project not found.")
    _require_admin(actor, organisation_id, project_id)
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
    view = _freeze_view(freeze)
    audit.record(actor, EVENT_FREEZE_CREATED,
                 f"Freeze from {when_text(starts_at)} to {when_text(ends_at)} on "
                 f"{view.environments_text} ({_scope_text(project_id)}): {view.reason}",
                 project_id=project_id, object_type="freeze", object_id=freeze.id,
                 object_label=view.reason[:80], after=view.as_dict(moment),
                 organisation_id=organisation_id,
                 idempotency_key=f"freeze:{freeze.id}:created")
    released = Released()
    if starts_at <= moment < ends_at:
        _activate(freeze, moment)
    db.session.commit()
    return _freeze_view(freeze), released


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
    _require_admin(actor, organisation_id, freeze.project_id)
    moment = clock_now()
    if freeze.lifted_at is not None or freeze.ends_at <= moment:
        raise Conflict("This freeze is over; create a new one.")
    if expected_version is not None and expected_version != freeze.version:
        raise Conflict("Someone changed this freeze meanwhile; look again.")
    before = _freeze_view(freeze)
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
    after = _freeze_view(freeze)
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
        _activate(freeze, moment)  # it starts now: hold, announce
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
    _require_admin(actor, organisation_id, freeze.project_id)
    moment = clock_now()
    if freeze.lifted_at is not None or freeze.ends_at <= moment:
        raise Conflict("This freeze is over already.")
    start_writing()
    lifted = _rowcount(db.session.execute(
        update(Freeze).where(Freeze.id == freeze_id, Freeze.lifted_at.is_(None))
        .values(lifted_at=moment, lifted_by_id=actor.user_id, lifted_by_label=actor.label,
                version=Freeze.version + 1)
        .execution_options(synchronize_session=False)))
    if lifted != 1:
        db.session.rollback()
        raise Conflict("This freeze is over already.")
    freeze = _freeze_row(freeze_id, organisation_id, project_id)
    db.session.refresh(freeze)
    view = _freeze_view(freeze)
    audit.record(actor, EVENT_FREEZE_LIFTED,
                 f"Freeze lifted by {actor.label}: {view.reason}", project_id=freeze.project_id,
                 object_type="freeze", object_id=freeze.id, object_label=view.reason[:80],
                 organisation_id=organisation_id, idempotency_key=f"freeze:{freeze.id}:lifted")
    released = _end_freeze(freeze, moment) if freeze.activated_at is not None else \
        release_hold("freeze", freeze.id, moment)
    db.session.commit()
    return view, released


def _scope_text(project_id: int | None) -> str:
    if project_id is None:
        return "whole organisation"
    project = db.session.get(Project, project_id)
    return f"project {project.name}" if project else f"project #{project_id}"


def _activate(freeze: Freeze, moment: datetime) -> int:
    """The freeze started: hold its flags in flight, announce it (once: compare-and-set on
    activated_at). In the caller's transaction; returns how many flags it held."""
    claimed = _rowcount(db.session.execute(
        update(Freeze).where(Freeze.id == freeze.id, Freeze.activated_at.is_(None),
                             Freeze.lifted_at.is_(None))
        .values(activated_at=moment, released_at=None)
        .execution_options(synchronize_session=False)))
    if claimed != 1:
        return 0
    view = _freeze_view(freeze)
    environment_ids = None if view.all_environments else list(view.environment_ids)
    held = hold_in_flight("freeze", freeze.id, freeze.organisation_id, freeze.project_id,
                          environment_ids, moment)
    message = (f"Freeze started on {view.environments_text} ({_scope_text(freeze.project_id)}) "
               f"until {when_text(view.ends_at)}, by {view.created_by}: {view.reason}")
    audit.record(Actor("system", "Release calendar"), EVENT_FREEZE_STARTED,
                 f"{message} ({held} flag{'s' if held != 1 else ''} held)",
                 project_id=freeze.project_id, object_type="freeze", object_id=freeze.id,
                 object_label=view.reason[:80], organisation_id=freeze.organisation_id,
                 idempotency_key=f"freeze:{freeze.id}:started:v{view.version}")
    notify_scope(freeze.organisation_id, freeze.project_id, "freeze_started", message,
                 key=f"freeze:{freeze.id}:started:v{view.version}")
    return held


def _end_freeze(freeze: Freeze, moment: datetime) -> Released:
    """The freeze ended or was lifted: release its flags, announce it (once)."""
    claimed = _rowcount(db.session.execute(
        update(Freeze).where(Freeze.id == freeze.id, Freeze.released_at.is_(None))
        .values(released_at=moment).execution_options(synchronize_session=False)))
    released = release_hold("freeze", freeze.id, moment)
    if claimed != 1:
        return released
    view = _freeze_view(freeze)
    how = f"lifted by {view.lifted_by}" if view.lifted_at is not None else "ended"
    message = (f"Freeze {how} on {view.environments_text} ({_scope_text(freeze.project_id)}): "
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


# --- Stop the line --------------------------------------------------------------------------------


def _scope_key(organisation_id: int, project_id: int | None) -> str:
    return f"project:{project_id}" if project_id is not None else f"organisation:{organisation_id}"


def get_stop(organisation_id: int, project_id: int | None) -> StopView | None:
    """The active stop of exactly this scope (a project's own, or the organisation's)."""
    row = db.session.scalar(select(LineStop).where(
        LineStop.scope == _scope_key(organisation_id, project_id), LineStop.lifted_at.is_(None)))
    return None if row is None else _stop_view(row)


def stop_history(organisation_id: int, project_id: int | None, limit: int = 20
                 ) -> list[StopView]:
    return [_stop_view(s) for s in db.session.scalars(
        select(LineStop).where(LineStop.scope == _scope_key(organisation_id, project_id))
        .order_by(LineStop.id.desc()).limit(limit))]


def stop_line(actor: Actor, *, organisation_id: int, project_id: int | None, reason: str
              ) -> tuple[StopView, int]:
    """Pull the switch: every transition of the project (organisation) holds until lifted, each
    flag in flight held in place in this one transaction (RELEASE_PIPELINE_FEATURE_HELD each).
    Admins only; a reason is required; Conflict when already stopped. Audits LINE_STOPPED,
    notifies. Commits; returns the stop and how many flags it held."""
    if project_id is not None:
        project = _project(project_id)
        if project.organisation_id != organisation_id:
            raise NotFound("Project not found.")
    _require_admin(actor, organisation_id, project_id)
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
    message = (f"Line stopped ({_scope_text(project_id)}) by {actor.label}: {stop.reason}")
    audit.record(actor, EVENT_LINE_STOPPED,
                 f"{message} ({held} flag{'s' if held != 1 else ''} held)",
                 project_id=project_id, object_type="line_stop", object_id=stop.id,
                 object_label=stop.reason[:80], organisation_id=organisation_id,
                 idempotency_key=f"stop:{stop.id}:stopped")
    notify_scope(organisation_id, project_id, "line_stopped", message, key=f"stop:{stop.id}:on")
    db.session.commit()
    return _stop_view(stop), held


def lift_stop(actor: Actor, *, organisation_id: int, project_id: int | None
              ) -> tuple[StopView, Released]:
    """Lift the switch: every flag it held resumes where it was, with the time it had left, its
    due work spread (at most release_per_second() a second, within
    release_max_spread_seconds()). Admins only; Conflict when the line is not stopped. Audits
    LINE_LIFTED and RELEASE_PIPELINE_FEATURE_RELEASED per flag; notifies. Commits; returns the
    stop and the release (bells to ring)."""
    _require_admin(actor, organisation_id, project_id)
    moment = clock_now()
    start_writing()
    stop = db.session.scalar(select(LineStop).where(
        LineStop.scope == _scope_key(organisation_id, project_id), LineStop.lifted_at.is_(None)))
    if stop is None:
        db.session.rollback()
        raise Conflict("The line is not stopped.")
    lifted = _rowcount(db.session.execute(
        update(LineStop).where(LineStop.id == stop.id, LineStop.lifted_at.is_(None))
        .values(lifted_at=moment, lifted_by_id=actor.user_id, lifted_by_label=actor.label)
        .execution_options(synchronize_session=False)))
    if lifted != 1:
        db.session.rollback()
        raise Conflict("The line is not stopped.")
    released = release_hold("stop", stop.id, moment)
    message = f"Line lifted ({_scope_text(project_id)}) by {actor.label}: it was stopped for " \
              f"{stop.reason}"
    audit.record(actor, EVENT_LINE_LIFTED,
                 f"{message} ({released.resumed} flag{'s' if released.resumed != 1 else ''} "
                 "resumed)", project_id=project_id, object_type="line_stop", object_id=stop.id,
                 object_label=stop.reason[:80], organisation_id=organisation_id,
                 idempotency_key=f"stop:{stop.id}:lifted")
    notify_scope(organisation_id, project_id, "line_lifted", message, key=f"stop:{stop.id}:off")
    db.session.commit()
    db.session.refresh(stop)
    return _stop_view(stop), released


# --- Holding and releasing runs -------------------------------------------------------------------


def _in_scope(organisation_id: int, project_id: int | None) -> Any:
    if project_id is not None:
        return PipelineRun.project_id == project_id
    return PipelineRun.project_id.in_(
        select(Project.id).where(Project.organisation_id == organisation_id))


def hold_in_flight(kind: HoldKind, hold_id: int, organisation_id: int, project_id: int | None,
                   environment_ids: Sequence[int] | None, moment: datetime) -> int:
    """Hold every run in flight of the scope (in the environments given, else all) whose clock
    runs: one UPDATE (due_at → held_due_at, due_at NULL, version + 1), then an audit entry per
    flag. In the caller's transaction; returns how many runs it held."""
    table = PipelineRun.__table__
    conditions = [
        table.c.ended_at.is_(None), table.c.status.in_(HELD_STATUSES),
        table.c.due_at.is_not(None),
        or_(table.c.hold_kind.is_(None), table.c.hold_kind == "window"),
        _in_scope(organisation_id, project_id),
    ]
    if environment_ids is not None:
        conditions.append(table.c.stage_id.in_(
            select(PipelineStage.id).where(PipelineStage.environment_id.in_(environment_ids))))
    rows = db.session.execute(
        table.update().where(and_(*conditions))
        .values(hold_kind=kind, hold_id=hold_id, held_since=moment, held_due_at=table.c.due_at,
                due_at=None, lease_until=None, version=table.c.version + 1)
        .returning(table.c.id, table.c.version, table.c.feature_id, table.c.pipeline_id,
                   table.c.project_id)).all()
    _audit_runs(rows, EVENT_HELD, kind, hold_id, moment, held=True)
    return len(rows)


def _audit_runs(rows: Sequence[Any], event: str, kind: str, hold_id: int | None,
                moment: datetime, *, held: bool, note: str = "") -> None:
    """An audit entry per run held or released (set-based, idempotent per run version)."""
    if not rows:
        return
    features: dict[int, str] = {}
    pipelines: dict[int, str] = {}
    feature_ids = sorted({r.feature_id for r in rows})
    for start in range(0, len(feature_ids), CHUNK):
        features.update(db.session.execute(select(Feature.id, Feature.name).where(
            Feature.id.in_(feature_ids[start:start + CHUNK]))).all())
    pipelines.update(db.session.execute(select(ReleasePipeline.id, ReleasePipeline.name).where(
        ReleasePipeline.id.in_({r.pipeline_id for r in rows}))).all())
    what = {"window": "outside its deployment windows", "freeze": "by a freeze",
            "stop": "because the line is stopped"}[kind]
    verb = "held" if held else "resumed"
    audit.record_many(Actor("system", "Release calendar"), [
        {"event_type": event,
         "message": (f"{features.get(r.feature_id, '?')} {verb} in pipeline "
                     f"{pipelines.get(r.pipeline_id, '?')} "
                     + (what if held else f"(was held {what})") + note),
         "project_id": r.project_id, "object_type": "feature", "object_id": r.feature_id,
         "object_label": features.get(r.feature_id, ""), "pipeline_id": r.pipeline_id,
         "feature_id": r.feature_id, "run_id": r.id,
         "after": {"hold": kind, "hold_id": hold_id, "at": iso(moment)},
         "idempotency_key": f"run:{r.id}:{verb}:{kind}:v{r.version}"}
        for r in rows])


def spread_due_times(natural: Sequence[datetime], moment: datetime, *,
                     per_second: int | None = None, max_spread_seconds: int | None = None
                     ) -> list[datetime]:
    """Due times for released runs, in the order given: each at its natural time (the time it had
    left, counted from now) but no earlier than now, and never more than `per_second` in one
    second — raised when needed so that every run whose natural time has come lands within
    `max_spread_seconds` of now. Thousands released at once start over a bounded interval."""
    rate = per_second or release_per_second()
    spread = max_spread_seconds or release_max_spread_seconds()
    due_now = sum(1 for n in natural if n <= moment + timedelta(seconds=spread))
    rate = max(rate, math.ceil(due_now / spread) if spread else due_now or 1)
    order = sorted(range(len(natural)), key=lambda i: (natural[i], i))
    result: list[datetime] = [moment] * len(natural)
    base = moment.replace(microsecond=0)
    cursor, used = 0, 0  # seconds after `base`, runs placed in that second
    for i in order:
        want = max(natural[i], moment)
        second = int((want - base).total_seconds())
        if second > cursor:
            cursor, used = second, 0
        if used >= rate:
            cursor, used = cursor + 1, 0
        slot = base + timedelta(seconds=cursor) + timedelta(seconds=used / rate)
        result[i] = max(want, slot)
        used += 1
    return result


def release_hold(kind: HoldKind, hold_id: int, moment: datetime, memo: Memo | None = None
                 ) -> Released:
    """Release the runs a freeze or stop holds, unless something still holds them (another
    freeze, a stop: they are handed to it, keeping their clock). Released runs get back the
    time they had left, spread (`spread_due_times`); a guarded rollout's next step moves on by
    the time held. In the caller's transaction (locks the runs); returns the bells to ring."""
    memo = memo or Memo()
    table = PipelineRun.__table__
    query = (select(table.c.id, table.c.version, table.c.feature_id, table.c.pipeline_id,
                    table.c.project_id, table.c.held_since, table.c.held_due_at,
                    table.c.next_step_at, PipelineStage.environment_id)
             .join(PipelineStage, PipelineStage.id == table.c.stage_id)
             .where(table.c.hold_kind == kind, table.c.hold_id == hold_id,
                    table.c.ended_at.is_(None))
             .order_by(table.c.id))
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(of=table)
    rows = db.session.execute(query).all()
    result = Released()
    if not rows:
        return result
    handed: dict[tuple[str, int], list[Any]] = {}
    free: list[Any] = []
    by_env: dict[int, Hold | None] = {}
    for row in rows:
        env = row.environment_id
        if env not in by_env:
            by_env[env] = hold_at(env, moment, memo, windows=False)
        hold = by_env[env]
        if hold is None or (hold.kind == kind and hold.source_id == hold_id):
            if hold is None:
                free.append(row)
            continue  # still held by the same hold: stays as it is
        assert hold.source_id is not None
        handed.setdefault((hold.kind, hold.source_id), []).append(row)
    for (other_kind, other_id), group in handed.items():
        ids = [r.id for r in group]
        for start in range(0, len(ids), CHUNK):
            db.session.execute(
                table.update().where(table.c.id.in_(ids[start:start + CHUNK]))
                .values(hold_kind=other_kind, hold_id=other_id, version=table.c.version + 1))
        result.still_held += len(group)
    if free:
        naturals = []
        for row in free:
            left = (row.held_due_at - row.held_since) if row.held_due_at and row.held_since \
                else timedelta(0)
            naturals.append(moment + max(left, timedelta(0)))
        dues = spread_due_times(naturals, moment)
        params = []
        for row, due in zip(free, dues, strict=True):
            step = row.next_step_at
            if step is not None and row.held_since is not None:
                step = step + (moment - row.held_since)
            params.append({"_id": row.id, "_version": row.version, "_due": due,
                           "_lease": due + LEASE_GRACE, "_step": step})
            result.bells.append(Bell(row.id, row.version + 1, due))
        db.session.execute(
            table.update()
            .where(table.c.id == bindparam("_id"), table.c.version == bindparam("_version"))
            .values(due_at=bindparam("_due"), lease_until=bindparam("_lease"),
                    next_step_at=bindparam("_step"), version=table.c.version + 1, **NO_HOLD),
            params)
        result.resumed = len(free)
        result.first_due, result.last_due = min(dues), max(dues)
        versions = [_Row(r.id, r.version + 1, r.feature_id, r.pipeline_id, r.project_id)
                    for r in free]
        _audit_runs(versions, EVENT_RELEASED, kind, hold_id, moment, held=False)
    return result


@dataclass(frozen=True)
class _Row:
    id: int
    version: int
    feature_id: int
    pipeline_id: int
    project_id: int


# --- The engine's questions -----------------------------------------------------------------------


def hold_values(run: Any, hold: Hold, moment: datetime) -> dict[str, Any]:
    """The run columns that hold a due run (`run` has due_at, held_due_at, hold_kind): a window
    moves due_at to the next opening; a freeze or stop holds it in place (due_at NULL)."""
    kept = run.held_due_at if run.hold_kind == "window" and run.held_due_at else run.due_at
    values: dict[str, Any] = {"hold_kind": hold.kind, "hold_id": hold.source_id,
                              "held_since": moment, "held_due_at": kept}
    if hold.kind == "window":
        values.update(due_at=hold.until, lease_until=None if hold.until is None
                      else hold.until + LEASE_GRACE)
    else:
        values.update(due_at=None, lease_until=None)
    return values


def memo_for(cache: Any) -> Memo:
    """The engine's per-call memo (planning.Cache.calendar_memo), its freezes and stops
    forgotten: a transaction reads them afresh."""
    if cache.calendar_memo is None:
        cache.calendar_memo = Memo()
    memo: Memo = cache.calendar_memo
    memo.fresh()
    return memo


def hold_due_run(run: Any, environment_id: int, moment: datetime, memo: Memo | None = None
                 ) -> dict[str, Any] | None:
    """Asked by the engine for a due run inside its write transaction: None when the stage may
    apply now, else the run's columns that hold it (and the audit entry is added). The engine
    compare-and-sets them."""
    hold = hold_at(environment_id, moment, memo)
    if hold is None:
        return None
    values = hold_values(run, hold, moment)
    _audit_runs([_Row(run.id, run.version + 1, run.feature_id, run.pipeline_id,
                      run.project_id)], EVENT_HELD, hold.kind, hold.source_id, moment, held=True,
                note=_until_note(hold))
    return values


def _until_note(hold: Hold) -> str:
    if hold.kind == "window":
        return f" until {when_text(hold.until)}" if hold.until else ""
    if hold.kind == "freeze" and hold.until:
        return f" until {when_text(hold.until)}: {hold.why}"
    return f": {hold.why}" if hold.why else ""


def hold_batch(rows: Sequence[Any], environment_id: int, moment: datetime,
               memo: Memo | None = None) -> list[tuple[int, int, datetime | None]] | None:
    """The engine's batch path: hold many due runs of one environment at once (rows carry id,
    version, due_at, feature_id, pipeline_id; the caller holds their locks). None when the stage
    may apply now; else the (id, new version, new due_at) of each, held by one UPDATE each
    (version compare-and-set) and audited."""
    hold = hold_at(environment_id, moment, memo)
    if hold is None:
        return None
    table = PipelineRun.__table__
    pairs = [(r.id, r.version) for r in rows]
    values: dict[str, Any] = {"hold_kind": hold.kind, "hold_id": hold.source_id,
                              "held_since": moment}
    if hold.kind == "window":
        values.update(due_at=hold.until,
                      lease_until=None if hold.until is None else hold.until + LEASE_GRACE)
    else:
        values.update(due_at=None, lease_until=None)
    db.session.execute(
        table.update().where(tuple_(table.c.id, table.c.version).in_(pairs))
        .values(held_due_at=case((table.c.hold_kind == "window", table.c.held_due_at),
                                 else_=table.c.due_at),
                version=table.c.version + 1, **values))
    project = {r.id: getattr(r, "project_id", None) for r in rows}
    _audit_runs([_Row(r.id, r.version + 1, r.feature_id, r.pipeline_id, project[r.id] or 0)
                 for r in rows], EVENT_HELD, hold.kind, hold.source_id, moment, held=True,
                note=_until_note(hold))
    return [(r.id, r.version + 1, values["due_at"]) for r in rows]


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
                name = _environment(environment_id, memo)[2]
        return Hold("window", "environment", run.due_at, environment_name=name)
    if run.hold_kind == "stop" and run.hold_id is not None:
        stop = db.session.get(LineStop, run.hold_id)
        return None if stop is None else _stop_hold(_stop_view(stop))
    if run.hold_kind == "freeze" and run.hold_id is not None:
        freeze = db.session.get(Freeze, run.hold_id)
        return None if freeze is None else _freeze_hold(_freeze_view(freeze))
    return None


# --- Change requests: break glass -----------------------------------------------------------------


def check_commit(environment_id: int, actor: Actor, break_glass_reason: str | None = None,
                 *, request_id: int | None = None, project_id: int | None = None) -> Hold | None:
    """Whether a change request into the environment may be committed now. While it is frozen
    (or the line is stopped) only an admin giving a reason may (break glass): audited
    CHANGE_REQUEST_BREAK_GLASS in the caller's transaction. Raises Conflict (no reason, or not
    an admin). Returns the hold broken, or None when nothing held it."""
    moment = clock_now()
    memo = Memo()
    hold = hold_at(environment_id, moment, memo, windows=False)
    if hold is None:
        return None
    env_project, organisation_id, name = _environment(environment_id, memo)
    reason = (break_glass_reason or "").strip()
    what = "frozen" if hold.kind == "freeze" else "held: the line is stopped"
    if not reason:
        raise Conflict(f"{name} is {what} ({describe_hold(hold)}). Only an admin giving a "
                       "reason can commit now (break glass).")
    if not may_administer(actor, organisation_id, env_project):
        raise Conflict(f"{name} is {what}; only an admin can break glass.")
    audit.record(actor, EVENT_BREAK_GLASS,
                 f"Break glass: change request #{request_id} committed into {name} while "
                 f"{what} by {actor.label}: {reason[:MAX_REASON]}",
                 project_id=project_id or env_project, environment_id=environment_id,
                 object_type="change_request", object_id=request_id,
                 object_label=f"#{request_id}", change_request_id=request_id,
                 after={"hold": hold.as_dict(), "reason": reason[:MAX_REASON]},
                 organisation_id=organisation_id)
    return hold


# --- Notifications --------------------------------------------------------------------------------


def notify_scope(organisation_id: int, project_id: int | None, kind: str, message: str, *,
                 key: str) -> int:
    """An in-app notification for every member of the project (of every project of the
    organisation) and every site admin; once per `key`. In the caller's transaction."""
    query = select(Membership.user_id, Membership.project_id)
    if project_id is not None:
        query = query.where(Membership.project_id == project_id)
    else:
        query = query.join(Project, Project.id == Membership.project_id).where(
            Project.organisation_id == organisation_id)
    recipients: dict[int, int | None] = {}
    for user_id, member_project in db.session.execute(query):
        recipients.setdefault(user_id, project_id if project_id is not None else member_project)
    for user_id in db.session.scalars(select(User.id).where(User.is_site_admin)):
        recipients.setdefault(user_id, project_id)
    link = f"/projects/{project_id}/board" if project_id is not None else "/"
    return notifications.announce(
        [(uid, pid) for uid, pid in sorted(recipients.items())], kind, message, link=link,
        key=f"calendar:{key}")


# --- The sweeper ----------------------------------------------------------------------------------


def tick(moment: datetime | None = None) -> Released:
    """One pass of the sweeper: start freezes whose time came, end those whose time is up,
    release runs whose freeze or stop no longer holds. Each freeze in its own transaction
    (compare-and-sets: several sweepers are safe). Returns what was released (bells to ring)."""
    moment = moment or clock_now()
    total = Released()
    starting = list(db.session.scalars(select(Freeze.id).where(
        Freeze.activated_at.is_(None), Freeze.lifted_at.is_(None), Freeze.starts_at <= moment,
        Freeze.ends_at > moment)))
    ending = list(db.session.scalars(select(Freeze.id).where(
        Freeze.activated_at.is_not(None), Freeze.released_at.is_(None),
        or_(Freeze.ends_at <= moment, Freeze.lifted_at.is_not(None)))))
    stale = _stale_holds(moment)
    db.session.rollback()
    for freeze_id in starting:
        start_writing()
        freeze = db.session.get(Freeze, freeze_id)
        if freeze is not None:
            _activate(freeze, moment)
        db.session.commit()
    for freeze_id in ending:
        start_writing()
        freeze = db.session.get(Freeze, freeze_id)
        if freeze is not None:
            _merge(total, _end_freeze(freeze, moment))
        db.session.commit()
    for kind, hold_id in stale:
        start_writing()
        _merge(total, release_hold(kind, hold_id, moment))
        db.session.commit()
    return total


def _merge(total: Released, part: Released) -> None:
    total.resumed += part.resumed
    total.still_held += part.still_held
    total.bells.extend(part.bells)
    if part.first_due is not None:
        total.first_due = min(filter(None, (total.first_due, part.first_due)))
    if part.last_due is not None:
        total.last_due = max(filter(None, (total.last_due, part.last_due)))


def _stale_holds(moment: datetime) -> list[tuple[HoldKind, int]]:
    """Freezes and stops that hold runs but no longer hold anything (ended, lifted): a lift or
    an end that raced with a transition holding a run leaves such runs; these release them."""
    held = db.session.execute(
        select(PipelineRun.hold_kind, PipelineRun.hold_id)
        .where(PipelineRun.hold_kind.in_(("freeze", "stop")), PipelineRun.hold_id.is_not(None),
               PipelineRun.ended_at.is_(None))
        .distinct()).all()
    stale: list[tuple[HoldKind, int]] = []
    for kind, hold_id in held:
        if hold_id is None:
            continue
        if kind == "stop":
            stop = db.session.get(LineStop, hold_id)
            if stop is None or stop.lifted_at is not None:
                stale.append(("stop", hold_id))
        else:
            freeze = db.session.get(Freeze, hold_id)
            if freeze is None or freeze.lifted_at is not None or not (
                    freeze.starts_at <= moment < freeze.ends_at):
                stale.append(("freeze", hold_id))
    return stale


__all__ = [
    "EVENT_TYPES", "Hold", "HoldKind", "FreezeView", "Memo", "NO_HOLD", "Released", "Schedule",
    "StopView", "Window", "check_commit", "create_freeze", "describe_hold", "get_freeze",
    "get_schedule", "get_stop", "hold_at", "iso", "hold_batch", "hold_due_run", "hold_in_flight",
    "hold_of_run", "holds_for_project", "is_open", "lift_freeze", "lift_stop", "list_freezes",
    "may_administer", "memo_for", "next_opening", "next_window_opening", "next_window_text",
    "notify_scope",
    "parse_hhmm", "parse_windows", "release_hold", "set_windows", "spread_due_times",
    "stop_for", "stop_history", "stop_line", "tick", "timezone_names", "update_freeze",
    "valid_timezone", "when_text", "window_intervals",
]
