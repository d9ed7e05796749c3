"""Template globals and filters."""

from datetime import datetime

from flask import Flask

from webapp.durations import duration


def _duration(seconds: float | None) -> str:
    """Human duration: 90 -> '1 minute 30 seconds'; 86400 -> '1 day'."""
    if seconds is None:
        return ""
    return duration(seconds) or "now"


def _datetime(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else ""


def register(app: Flask) -> None:
    app.jinja_env.filters["duration"] = _duration
    app.jinja_env.filters["dt"] = _datetime
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
