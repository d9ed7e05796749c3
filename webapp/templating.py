"""Template globals and filters."""

from datetime import datetime

from flask import Flask


def _duration(seconds: float | int | None) -> str:
    """Human duration: 90 -> '1 minute 30 seconds'; 86400 -> '1 day'."""
    if seconds is None:
        return ""
    seconds = int(round(seconds))
    if seconds <= 0:
        return "now"
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        amount, seconds = divmod(seconds, size)
        if amount:
            parts.append(f"{amount} {unit}{'s' if amount != 1 else ''}")
    return " ".join(parts[:2])


def _datetime(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def register(app: Flask) -> None:
    app.jinja_env.filters["duration"] = _duration
    app.jinja_env.filters["dt"] = _datetime
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
