"""What the screens show of the release calendar: each environment's windows and whether it is
open, the freezes and stops in force (the banner), why a held flag waits and until when, and the
timeline of a pipeline or of a flag in flight with the calendar applied.

Reads only. The rules (when an environment opens, what a freeze or a stop holds) are
services/calendar.py's; this module asks it and puts the answers into words, each call with one
`calendar.Memo`, so a page reads each schedule, freeze and stop once.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import Environment, Freeze, LineStop, PipelineRun, PipelineStage, Project
from webapp.services import calendar, projects
from webapp.services.calendar_words import (
    date_text,
    hours_text,
    moment_text,
    weekdays_text,
)
from webapp.services.errors import NotFound
from webapp.services.timeline import human_duration

# Rollouts longer than this many steps are not simulated step by step (the preview says
# "at the earliest").
MAX_SIMULATED_STEPS = 200


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
class StageWhen:
    """When a stage would act, with the calendar applied."""

    position: int
    acts_at: datetime | None  # None: not known (the line is stopped, or no window opens)
    done_at: datetime | None
    held: str  # "" or why it waits: "Production: next window Monday 09:00 Europe/Berlin"
    timezone: str


@dataclass(frozen=True)
class CalendarTimeline:
    stages: list[StageWhen]
    launched_at: datetime | None
    now: datetime
    blocked: str = ""  # why the launch cannot be known ("the line is stopped")

    @property
    def notes(self) -> list[str]:
        return [s.held for s in self.stages if s.held]

    def when(self, stage: StageWhen) -> str:
        if stage.acts_at is None:
            return "not known while held"
        return moment_text(stage.acts_at, stage.timezone, now=self.now)

    @property
    def launched(self) -> str:
        """"Expected launch Tuesday 14:00" (the earliest, when people must approve)."""
        if self.launched_at is None:
            return f"Expected launch: not known ({self.blocked})." if self.blocked else ""
        zone_name = self.stages[-1].timezone if self.stages else "UTC"
        return f"Expected launch: {moment_text(self.launched_at, zone_name, now=self.now)}."


@dataclass(frozen=True)
class PlannedStage:
    """A stage to place on the calendar: its environment, wait, and rollout steps."""

    position: int
    environment_id: int | None
    wait_seconds: int
    steps: int  # phased rollout steps after the first (0: none)
    interval_seconds: int


def plan(stages: Sequence[PlannedStage], start: datetime, *, first_due: datetime | None = None,
         now: datetime | None = None, memo: calendar.Memo | None = None) -> CalendarTimeline:
    """Place the stages on the calendar from `start`: each acts after its wait, at the next
    moment its environment may take a change (windows, known freezes, a stopped line); a
    phased rollout's steps each wait likewise. `first_due` is when the first stage falls due
    (a flag in flight: its run's due time)."""
    now = now or clock_now()
    memo = memo or calendar.Memo()
    clock: datetime | None = start
    placed: list[StageWhen] = []
    blocked = ""
    for index, stage in enumerate(stages):
        zone_name = _zone_of(stage.environment_id, memo)
        if clock is None:
            placed.append(StageWhen(stage.position, None, None, "", zone_name))
            continue
        due = first_due if index == 0 and first_due is not None else (
            clock + timedelta(seconds=stage.wait_seconds))
        acts = _opening(stage.environment_id, due, memo)
        held = ""
        if acts is None or acts > due:
            held = _held_text(stage.environment_id, due, acts, memo, now)
            if acts is None:
                blocked = held or "held"
        done = acts
        for _ in range(min(stage.steps, MAX_SIMULATED_STEPS)):
            if done is None:
                break
            done = _opening(stage.environment_id, done + timedelta(
                seconds=stage.interval_seconds), memo)
        placed.append(StageWhen(stage.position, acts, done, held, zone_name))
        clock = done
    return CalendarTimeline(placed, clock, now, blocked)


def _opening(environment_id: int | None, at: datetime, memo: calendar.Memo
             ) -> datetime | None:
    if environment_id is None:
        return at
    try:
        return calendar.next_opening(environment_id, at, memo)
    except NotFound:
        return at


def _zone_of(environment_id: int | None, memo: calendar.Memo) -> str:
    schedule = _schedule(environment_id, memo)
    return schedule.timezone if schedule else "UTC"


def _held_text(environment_id: int | None, due: datetime, opens: datetime | None,
               memo: calendar.Memo, now: datetime) -> str:
    """"Production: next window Monday 09:00 Europe/Berlin", "Production: frozen until …",
    "Production: held while the line is stopped"."""
    schedule = _schedule(environment_id, memo)
    if schedule is None or environment_id is None:
        return ""
    hold = calendar.hold_at(environment_id, due, memo)
    name = schedule.environment_name
    if hold is None and opens is not None:
        return f"{name}: next window {moment_text(opens, schedule.timezone, now=now)}"
    if hold is not None and hold.kind == "stop":
        return f"{name}: held while the line is stopped"
    if opens is None:
        return f"{name}: no deployment window opens"
    if hold is not None and hold.kind == "freeze":
        return (f"{name}: frozen, next opening "
                f"{moment_text(opens, schedule.timezone, now=now)}")
    return f"{name}: next window {moment_text(opens, schedule.timezone, now=now)}"


def _rollout_of(stage: PipelineStage) -> tuple[int, int]:
    """(steps after the first, interval seconds) of the stage's phased rollout, or (0, 0)."""
    for action in stage.actions:
        if (action.action_type == "PHASED_ROLLOUT" and action.rollout_initial
                and action.rollout_step and action.rollout_interval_seconds
                and 0 < action.rollout_initial <= 100 and action.rollout_step > 0):
            steps = math.ceil((100 - action.rollout_initial) / action.rollout_step)
            return max(0, steps), action.rollout_interval_seconds
    return 0, 0


def _planned(stage: PipelineStage) -> PlannedStage:
    steps, interval = _rollout_of(stage)
    wait = (stage.wait_seconds or 0) if stage.trigger_type == "WAIT_FOR" else 0
    return PlannedStage(stage.position, stage.environment_id, wait, steps, interval)


def pipeline_plan(stages: Sequence[PipelineStage], now: datetime | None = None
                  ) -> CalendarTimeline:
    """The timeline preview with the calendar applied: a flag added now."""
    now = now or clock_now()
    return plan([_planned(s) for s in stages], now, now=now)


def flag_plan(run: PipelineRun, now: datetime | None = None) -> CalendarTimeline | None:
    """When a flag in flight would launch, with the calendar applied: its current stage from
    its due time (or, held by a freeze, from the freeze's end plus the time it had left), then
    every later stage. None when people decide the next step (approval, paused, halted,
    health checks)."""
    if run.ended_at is not None or run.status not in ("waiting", "rolling_out"):
        return None
    now = now or clock_now()
    memo = calendar.Memo()
    stages = sorted(run.pipeline.stages, key=lambda s: s.position)
    if not 0 <= run.stage_position < len(stages):
        return None
    current = _planned(stages[run.stage_position])
    if run.status == "rolling_out":
        step = next((a.rollout_step for a in stages[run.stage_position].actions
                     if a.action_type == "PHASED_ROLLOUT" and a.rollout_step), 0)
        left = math.ceil((100 - (run.rollout_percent or 0)) / step) if step else 0
        current = PlannedStage(current.position, current.environment_id, 0, max(0, left - 1),
                               current.interval_seconds)
    first_due = run.due_at
    if first_due is None and run.hold_kind in ("freeze", "stop"):
        opens = _opening(current.environment_id, now, memo)
        if opens is None:
            return CalendarTimeline([], None, now, "held while the line is stopped")
        had = (run.held_due_at - run.held_since) if run.held_due_at and run.held_since \
            else timedelta(0)
        first_due = opens + max(had, timedelta(0))
    if first_due is None:
        return None
    later = [_planned(s) for s in stages[run.stage_position + 1:]]
    return plan([current, *later], max(first_due, now), first_due=max(first_due, now),
                now=now, memo=memo)
