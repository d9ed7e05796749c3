"""Deployment windows: an environment's weekly opening hours in its time zone.

Wall-clock hours become instants through zoneinfo (a time skipped by a spring-forward jump opens
at the jump; a time that occurs twice keeps the window open through both). Also the input
parsing (HH:MM, IANA zones, a list of windows) and `set_windows`, the one change.
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from sqlalchemy import select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    WEEKDAYS,
    DeploymentWindow,
    Environment,
    EnvironmentSchedule,
    PipelineRun,
    PipelineStage,
)
from webapp.services.actors import Actor
from webapp.services.errors import Invalid, NotFound
from webapp.services.governance import audit
from webapp.services.runs.calendar.records import EVENT_WINDOWS, Memo, Schedule, Window
from webapp.services.runs.calendar.scope import environment_of, project_or_404, require_admin
from webapp.services.runs.planning import start_writing

MAX_WINDOWS = 70


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


def get_schedule(environment_id: int, memo: Memo | None = None) -> Schedule:
    """The environment's time zone and windows (always open when it has none)."""
    memo = memo or Memo()
    if environment_id not in memo.schedules:
        _, _, name = environment_of(environment_id, memo)
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
    project = project_or_404(environment.project_id)
    require_admin(actor, project.organisation_id, project.id)
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
