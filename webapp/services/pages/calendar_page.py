"""The release calendar pages: each environment's windows and whether it is open now, the
freezes in force and coming, and the stops (a project's page and the organisation's).

Reads only. The rules are services/runs/calendar's; this module asks it and puts the answers
into words, each page with one `calendar.Memo`, so it reads each schedule, freeze and stop once.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import Environment, Project
from webapp.services.errors import NotFound
from webapp.services.pages.calendar_words import (
    date_text,
    hours_text,
    moment_text,
    weekdays_text,
)
from webapp.services.platform import projects
from webapp.services.runs import calendar

# --- An environment's schedule --------------------------------------------------------------------


@dataclass(frozen=True)
class Hours:
    """Some weekdays with the same opening hours."""

    days: tuple[int, ...]
    opens_minute: int
    closes_minute: int

    @property
    def text(self) -> str:
        hours = hours_text(_clock(self.opens_minute), _clock(self.closes_minute))
        return f"{weekdays_text(self.days)} {hours}"

    @property
    def opens(self) -> str:
        return calendar.hhmm(self.opens_minute)

    @property
    def closes(self) -> str:
        return calendar.hhmm(self.closes_minute)


def _clock(minute: int) -> time:
    minute = max(0, min(1440, minute)) % 1440
    return time(minute // 60, minute % 60)


def group_hours(windows: Iterable[calendar.Window]) -> list[Hours]:
    """Windows as groups of days that share their hours, Monday's first."""
    by_hours: dict[tuple[int, int], list[int]] = {}
    for window in windows:
        by_hours.setdefault((window.opens_minute, window.closes_minute), []).append(
            window.weekday)
    groups = [Hours(tuple(sorted(set(days))), opens, closes)
              for (opens, closes), days in by_hours.items()]
    return sorted(groups, key=lambda h: (h.days[0], h.opens_minute))


@dataclass(frozen=True)
class EnvironmentCalendar:
    environment_id: int
    environment_name: str
    timezone: str
    hours: list[Hours]
    hold: calendar.Hold | None  # what holds it now (None: a stage may apply now)
    next_opening: datetime | None  # held: when a stage may apply again (None: unknown)
    closes_at: datetime | None  # open inside a window: when it closes
    now: datetime

    @property
    def summary(self) -> str:
        if not self.hours:
            return "No window: always open."
        return "Open " + "; ".join(h.text for h in self.hours) + f" ({self.timezone})."

    @property
    def badge(self) -> str:
        if self.hold is None:
            return "Open"
        return {"window": "Closed", "freeze": "Frozen", "stop": "Stopped"}[self.hold.kind]

    @property
    def badge_class(self) -> str:
        return {"Open": "on", "Closed": "warn", "Frozen": "bad", "Stopped": "bad"}[self.badge]

    @property
    def status(self) -> str:
        """"Open now, until 16:00 Europe/Berlin", "Next window Monday 09:00 Europe/Berlin",
        "Frozen until …; next opening …"."""
        if self.hold is None:
            if self.closes_at is not None:
                return f"Open now, until {self._when(self.closes_at)}."
            return ""
        if self.hold.kind == "stop":
            return "Held: the line is stopped until an admin lifts it."
        if self.hold.kind == "window":
            if self.next_opening is None:
                return "No window opens in the coming year."
            return f"Next window {self._when(self.next_opening)}."
        until = f" until {self._when(self.hold.until)}" if self.hold.until else ""
        after = (f" Next opening {self._when(self.next_opening)}."
                 if self.next_opening is not None and self.next_opening != self.hold.until
                 else "")
        return f"Frozen{until}.{after}"

    def _when(self, at: datetime) -> str:
        return moment_text(at, self.timezone, now=self.now)

    @property
    def form_defaults(self) -> dict[str, Any]:
        first = self.hours[0] if self.hours else None
        return {"weekdays": list(first.days) if first else [0, 1, 2, 3],
                "opens": first.opens if first else "09:00",
                "closes": first.closes if first else "16:00",
                "timezone": self.timezone}


# --- Freezes and stops in words -----------------------------------------------------------------


@dataclass(frozen=True)
class FreezeLine:
    """A freeze as the calendar page lists it."""

    freeze: calendar.FreezeView
    environments_text: str
    in_force: bool

    @property
    def id(self) -> int:
        return self.freeze.id

    @property
    def reason(self) -> str:
        return self.freeze.reason

    @property
    def by(self) -> str:
        return self.freeze.created_by or "someone"

    @property
    def starts_at(self) -> datetime:
        return self.freeze.starts_at

    @property
    def ends_at(self) -> datetime:
        return self.freeze.ends_at

    @property
    def starts_text(self) -> str:
        return date_text(self.freeze.starts_at)

    @property
    def ends_text(self) -> str:
        return date_text(self.freeze.ends_at)

    @property
    def project_scoped(self) -> bool:
        return self.freeze.project_id is not None

    @property
    def scope_text(self) -> str:
        return "This project" if self.project_scoped else "The whole organisation"


@dataclass(frozen=True)
class StopLine:
    stop: calendar.StopView

    @property
    def text(self) -> str:
        return (f"by {self.stop.stopped_by or 'someone'} since "
                f"{date_text(self.stop.stopped_at)}: {self.stop.reason}")


def _and(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _environments_text(freeze: calendar.FreezeView, names: dict[int, str]) -> str:
    if freeze.all_environments:
        return "every environment" if freeze.project_id is not None else (
            "every environment of every project")
    return _and([names[i] for i in freeze.environment_ids if i in names]) or "no environment"


# --- The calendar pages ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectCalendar:
    calendars: list[EnvironmentCalendar]
    freezes: list[FreezeLine]
    stop: StopLine | None
    organisation_stop: StopLine | None


@dataclass(frozen=True)
class OrganisationCalendar:
    freezes: list[FreezeLine]
    stop: StopLine | None


def project_calendar(project: Project) -> ProjectCalendar:
    """A project's calendar page: each environment's windows and state now, the freezes in
    force and coming (the project's and the organisation's), the stops."""
    now = clock_now()
    memo = calendar.Memo()
    environments = projects.environments_of(project.id)
    calendars = []
    for env in environments:
        schedule = calendar.get_schedule(env.id, memo)
        hold = calendar.hold_at(env.id, now, memo)
        calendars.append(EnvironmentCalendar(
            environment_id=env.id, environment_name=env.name, timezone=schedule.timezone,
            hours=group_hours(schedule.windows), hold=hold,
            next_opening=calendar.next_opening(env.id, now, memo) if hold else None,
            closes_at=calendar.window_closes_at(schedule, now), now=now))
    names = {e.id: e.name for e in environments}
    freezes = [FreezeLine(f, _environments_text(f, names), f.starts_at <= now)
               for f in calendar.list_freezes(project.organisation_id, project.id, at=now)]
    own = calendar.get_stop(project.organisation_id, project.id)
    organisation = calendar.get_stop(project.organisation_id, None)
    return ProjectCalendar(calendars, freezes, StopLine(own) if own else None,
                           StopLine(organisation) if organisation else None)


def organisation_calendar() -> OrganisationCalendar:
    """The organisation's own freezes (in force and coming) and its stop."""
    now = clock_now()
    organisation_id = organisation_of()
    freezes = [FreezeLine(f, _environments_text(f, {}), f.starts_at <= now)
               for f in calendar.list_freezes(organisation_id, None, at=now)]
    stop = calendar.get_stop(organisation_id, None)
    return OrganisationCalendar(freezes, StopLine(stop) if stop else None)


def organisation_of() -> int:
    """The organisation the dashboard's site administrators look after."""
    return projects.default_organisation().id


def environment_of(project_id: int, environment_id: int) -> Environment:
    """An environment of the project (NotFound otherwise)."""
    environment = db.session.get(Environment, environment_id) if 0 < environment_id < 2**31 \
        else None
    if environment is None or environment.project_id != project_id:
        raise NotFound("Environment not found.")
    return environment
