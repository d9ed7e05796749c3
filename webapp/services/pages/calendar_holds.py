"""What the pages say of what the release calendar holds: a project's banner while its line
is stopped or a freeze is in force, why a held flag waits and until when, and why a change
request into a held environment cannot simply be committed.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import Environment, Freeze, LineStop, PipelineRun, Project
from webapp.services.actors import Actor
from webapp.services.errors import NotFound
from webapp.services.pages.calendar_words import date_text, moment_text
from webapp.services.pipelines.timeline import human_duration
from webapp.services.runs import calendar


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
        schedule = schedule_or_none(run.environment_id, memo)
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


def schedule_or_none(environment_id: int | None, memo: calendar.Memo
                     ) -> calendar.Schedule | None:
    """The environment's schedule, or None (no environment, or it is gone)."""
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
