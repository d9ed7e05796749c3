"""The one clock. App code asks `now()`; tests move it with time-machine."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)
