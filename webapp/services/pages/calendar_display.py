"""What the screens show of the release calendar: each environment's windows and whether it is
open, the freezes and stops in force (the banner), why a held flag waits and until when, and the
timeline of a pipeline or of a flag in flight with the calendar applied.

Reads only. The rules (when an environment opens, what a freeze or a stop holds) are
services/runs/calendar's; this module asks it and puts the answers into words, each call with one
`calendar.Memo`, so a page reads each schedule, freeze and stop once.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from sqlalchemy import select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import Environment, Freeze, LineStop, PipelineRun, PipelineStage, Project
from webapp.services.actors import Actor
from webapp.services.errors import NotFound
from webapp.services.pages.calendar_words import (
    date_text,
    hours_text,
    moment_text,
    weekdays_text,
)
from webapp.services.pipelines.timeline import human_duration
from webapp.services.platform import projects
from webapp.services.runs import calendar, calendar_timeline

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


@dataclass(frozen=True)
class BannerLine:
    """One line of a project page's banner: who, why, until when."""

    kind: str  # freeze | stop
    title: str
    text: str


@dataclass(frozen=True)
class Banner:
    stops: list[BannerLine]
    freezes: list[BannerLine]

    def __bool__(self) -> bool:
        return bool(self.stops or self.freezes)


def _and(names: Sequence[str]) -> str:
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _environments_text(freeze: calendar.FreezeView, names: dict[int, str]) -> str:
    if freeze.all_environments:
        return "every environment" if freeze.project_id is not None else (
            "every environment of every project")
    return _and([names[i] for i in freeze.environment_ids if i in names]) or "no environment"


def banner(project_id: int) -> Banner:
    """What a project's pages show while its line is stopped or a freeze is in force there."""
    now = clock_now()
    try:
        holds = calendar.holds_for_project(project_id, now)
    except NotFound:
        return Banner([], [])
    stops, freezes = [], []
    for hold in holds:
        who = hold.who or "someone"
        if hold.kind == "stop":
            scope = "Every project's line" if hold.scope == "organisation" else "The line"
            since = f" since {date_text(hold.since)}" if hold.since else ""
            stops.append(BannerLine(
                "stop", f"{scope} is stopped.",
                f"Stopped by {who}{since}: {hold.why}. Every flag holds where it is until an "
                "admin lifts it."))
        elif hold.kind == "freeze":
            where = hold.environment_name or "every environment"
            if where == "all environments":
                where = "every environment"
            scope = " of every project" if hold.scope == "organisation" else ""
            until = date_text(hold.until) if hold.until else "further notice"
            freezes.append(BannerLine(
                "freeze", f"Frozen until {until}.",
                f"{where[:1].upper()}{where[1:]}{scope}, by {who}: {hold.why}. Flags wait "
                "where they are and continue when it ends."))
    return Banner(stops, freezes)


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


# --- Why a flag waits -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HoldNote:
    """Why a held flag waits and when it can move again, for its card and its run page."""

    kind: str  # window | freeze | stop
    text: str


def hold_notes(runs: Sequence[Any], now: datetime | None = None) -> dict[int, HoldNote]:
    """Per held run (rows with id, hold_kind, hold_id, due_at, held_since, held_due_at and
    the environment_id of their stage): why it waits. A fixed number of statements for any
    number of runs: the freezes, the stops and the schedules they name, one read each."""
    held = [r for r in runs if getattr(r, "hold_kind", None)]
    if not held:
        return {}
    now = now or clock_now()
    memo = calendar.Memo()
    freeze_ids = {r.hold_id for r in held if r.hold_kind == "freeze" and r.hold_id}
    stop_ids = {r.hold_id for r in held if r.hold_kind == "stop" and r.hold_id}
    freezes = {f.id: f for f in db.session.scalars(
        select(Freeze).where(Freeze.id.in_(freeze_ids)))} if freeze_ids else {}
    stops = {s.id: s for s in db.session.scalars(
        select(LineStop).where(LineStop.id.in_(stop_ids)))} if stop_ids else {}
    notes = {}
    for run in held:
        schedule = _schedule(run.environment_id, memo)
        zone_name = schedule.timezone if schedule else "UTC"
        where = schedule.environment_name if schedule else "This environment"
        left = _left(run)
        if run.hold_kind == "window":
            text = (f"{where}: next window {moment_text(run.due_at, zone_name, now=now)}"
                    if run.due_at else f"{where}: no deployment window opens")
            notes[run.id] = HoldNote("window", f"Waiting for the deployment window. {text}.")
        elif run.hold_kind == "freeze":
            freeze = freezes.get(run.hold_id)
            reason = f": {freeze.reason}" if freeze and freeze.reason else ""
            until = (f" until {moment_text(freeze.ends_at, zone_name, now=now)}"
                     if freeze else "")
            notes[run.id] = HoldNote(
                "freeze", f"Held by a freeze of {where}{until}{reason}. It continues then"
                          f"{f' with {left} left' if left else ''}.")
        else:
            stop = stops.get(run.hold_id)
            reason = f": {stop.reason}" if stop and stop.reason else ""
            who = f" by {stop.stopped_by_label}" if stop and stop.stopped_by_label else ""
            notes[run.id] = HoldNote(
                "stop", f"Held: the line is stopped{who}{reason}. It continues when an admin "
                        f"lifts it{f' with {left} left' if left else ''}.")
    return notes


def _schedule(environment_id: int | None, memo: calendar.Memo) -> calendar.Schedule | None:
    if environment_id is None:
        return None
    try:
        return calendar.get_schedule(environment_id, memo)
    except NotFound:
        return None


def _left(run: Any) -> str:
    """The time the run had left when it was held ("2 hours"), or ""."""
    if run.held_due_at is None or run.held_since is None:
        return ""
    seconds = int((run.held_due_at - run.held_since).total_seconds())
    return human_duration(seconds) if seconds > 0 else ""


@dataclass(frozen=True)
class CommitHold:
    """Why a change request into a held environment cannot simply be committed now."""
    text: str  # "Production is frozen until 3 Jan 00:00 UTC by ann@…: holidays"
    may_break_glass: bool  # this person is an admin who may commit anyway, giving a reason


def commit_hold(environment_id: int, actor: Actor) -> CommitHold | None:
    """A freeze or a stopped line holding the environment now (deployment windows do not hold
    a change request's commit), with whether this person may break glass; None when free."""
    memo = calendar.Memo()
    hold = calendar.hold_at(environment_id, clock_now(), memo, windows=False)
    if hold is None:
        return None
    environment = db.session.get_one(Environment, environment_id)
    project = db.session.get_one(Project, environment.project_id)
    return CommitHold(f"{environment.name}: {calendar.describe_hold(hold)}",
                      calendar.may_administer(actor, project.organisation_id, project.id))


def run_hold(run: PipelineRun, environment_id: int | None) -> HoldNote | None:
    """Why this run waits, if the calendar holds it."""
    if not run.hold_kind:
        return None
    return hold_notes([HeldRun.of(run, environment_id)]).get(run.id)


@dataclass(frozen=True)
class HeldRun:
    """What `hold_notes` reads of a run (a board row or the run itself)."""

    id: int
    hold_kind: str | None
    hold_id: int | None
    due_at: datetime | None
    held_since: datetime | None
    held_due_at: datetime | None
    environment_id: int | None

    @classmethod
    def of(cls, run: Any, environment_id: int | None) -> "HeldRun":
        return cls(run.id, run.hold_kind, run.hold_id, run.due_at, run.held_since,
                   run.held_due_at, environment_id)


# --- Timelines with the calendar applied ----------------------------------------------------------


@dataclass(frozen=True)
class CalendarTimeline:
    """calendar_timeline's expected times, in words: each stage's note ("Production: next
    window Monday 09:00") and time in its environment's zone, and the expected launch."""

    expected: calendar_timeline.ExpectedTimeline
    zones: tuple[str, ...]  # per stage, its environment's time zone
    now: datetime
    why_unknown: str = ""  # what holds the flag when no stage says it

    @property
    def notes(self) -> list[str]:
        return self.expected.notes

    @property
    def blocked(self) -> bool:
        return self.expected.launch_at is None

    def note_at(self, index: int) -> str:
        stages = self.expected.stages
        return (stages[index].note or "") if 0 <= index < len(stages) else ""

    def when_at(self, index: int) -> str:
        """When stage `index` is expected to act, in its environment's zone."""
        stages = self.expected.stages
        if not 0 <= index < len(stages) or stages[index].past:
            return ""
        if stages[index].acts_at is None:
            return "not known while held"
        return moment_text(stages[index].acts_at, self.zones[index], now=self.now)

    @property
    def launched(self) -> str:
        """"Expected launch: Tuesday 09:00 Europe/Berlin." (the earliest, when people approve
        first), or why it cannot be known."""
        launch = self.expected.launch_at
        if launch is None:
            held = next((s.note for s in self.expected.stages
                         if not s.past and s.acts_at is None and s.note), "")
            # The stage's note is listed beside it already; say only what nothing else says.
            why = self.why_unknown if not held else ""
            return f"Expected launch: not known ({why})." if why else (
                "Expected launch: not known while held.")
        earliest = "at the earliest " if any(s.earliest for s in self.expected.stages) else ""
        zone_name = self.zones[-1] if self.zones else "UTC"
        return f"Expected launch: {earliest}{moment_text(launch, zone_name, now=self.now)}."


def _zones(expected: calendar_timeline.ExpectedTimeline, memo: calendar.Memo
           ) -> tuple[str, ...]:
    zones = []
    for stage in expected.stages:
        schedule = _schedule(stage.environment_id, memo)
        zones.append(schedule.timezone if schedule else "UTC")
    return tuple(zones)


def pipeline_plan(stages: Sequence[PipelineStage], now: datetime | None = None
                  ) -> CalendarTimeline:
    """The timeline preview with the calendar applied: a flag added now."""
    now = now or clock_now()
    memo = calendar.Memo()
    expected = calendar_timeline.preview_times(stages, now, memo)
    return CalendarTimeline(expected, _zones(expected, memo), now)


def flag_plan(run: PipelineRun, now: datetime | None = None) -> CalendarTimeline | None:
    """When a flag in flight is expected to launch, the calendar applied (None once ended)."""
    if run.ended_at is not None:
        return None
    now = now or clock_now()
    memo = calendar.Memo()
    expected = calendar_timeline.run_times(run, now, memo)
    why = "the line is stopped until an admin lifts it" if run.hold_kind == "stop" else ""
    return CalendarTimeline(expected, _zones(expected, memo), now, why)
