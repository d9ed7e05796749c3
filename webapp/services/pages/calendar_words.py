"""The release calendar in words, for the screens: weekdays as ranges, a window's hours, the
next opening as a person reads it ("Monday 09:00"), in the window's own time zone.

Pure functions over datetimes and zone names: no database, no request.
"""

from collections.abc import Iterable
from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from webapp.clock import now as clock_now

DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
SHORT_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
# An opening further away than this reads with its date ("Monday 5 January 09:00").
WEEK = timedelta(days=6)


def weekdays_text(days: Iterable[int]) -> str:
    """0 = Monday ... 6 = Sunday, in words: "Monday–Thursday", "Monday, Wednesday and Friday",
    "every day", "no day"."""
    wanted = sorted({d for d in days if 0 <= d <= 6})
    if len(wanted) == 7:
        return "every day"
    if not wanted:
        return "no day"
    runs: list[list[int]] = []
    for day in wanted:
        if runs and runs[-1][-1] == day - 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    parts = []
    for run in runs:
        if len(run) >= 3:
            parts.append(f"{DAY_NAMES[run[0]]}–{DAY_NAMES[run[-1]]}")
        else:
            parts.extend(DAY_NAMES[d] for d in run)
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def hours_text(start: time, end: time) -> str:
    """09:00–16:00 (an end of midnight reads 24:00)."""
    until = "24:00" if end == time(0, 0) else end.strftime("%H:%M")
    return f"{start.strftime('%H:%M')}–{until}"


def zone(name: str | None) -> ZoneInfo:
    """The named zone, UTC when unknown (a zone removed from tzdata still shows something)."""
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def moment_text(at: datetime, zone_name: str | None = None, *, now: datetime | None = None
                ) -> str:
    """When something happens, as a person reads it in `zone_name` (UTC by default):
    "today 15:00", "Monday 09:00" within the coming six days, else "Monday 5 January 2031
    09:00". The zone's name follows unless it is UTC ("Monday 09:00 Europe/Berlin")."""
    tz = zone(zone_name)
    local = at.astimezone(tz)
    today = (now or clock_now()).astimezone(tz).date()
    days = (local.date() - today).days
    clock = local.strftime("%H:%M")
    if days == 0:
        text = f"today {clock}"
    elif 0 < days <= WEEK.days:
        text = f"{DAY_NAMES[local.weekday()]} {clock}"
    else:
        text = f"{DAY_NAMES[local.weekday()]} {local.day} {local.strftime('%B %Y')} {clock}"
    key = getattr(tz, "key", "UTC")
    return text if key == "UTC" else f"{text} {key}"


def date_text(at: datetime, zone_name: str | None = None) -> str:
    """5 January 2031 09:00 UTC: a freeze's bounds, in full."""
    tz = zone(zone_name)
    local = at.astimezone(tz)
    return f"{local.day} {local.strftime('%B %Y %H:%M')} {getattr(tz, 'key', 'UTC')}"


# Zones most teams pick, offered first; every other IANA zone follows in order.
COMMON_ZONES = ("UTC", "Europe/London", "Europe/Berlin", "Europe/Paris", "America/New_York",
                "America/Chicago", "America/Los_Angeles", "America/Sao_Paulo", "Asia/Kolkata",
                "Asia/Singapore", "Asia/Tokyo", "Australia/Sydney")


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """Every IANA zone name this machine knows, the common ones first (the picker's order)."""
    known = available_timezones()
    rest = sorted(name for name in known if name not in COMMON_ZONES and "/" in name
                  and not name.startswith(("Etc/", "SystemV/", "US/", "posix/", "right/")))
    return (*(name for name in COMMON_ZONES if name in known or name == "UTC"), *rest)


@lru_cache(maxsize=1)
def _zone_set() -> frozenset[str]:
    return frozenset(zone_names())


def is_zone(name: str) -> bool:
    """A zone name the picker offers (what a form may store)."""
    return name in _zone_set()
