"""Durations in words, the one formatter every page uses (with the units' sizes named once)."""

SECOND = 1
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_UNITS = (("day", "d", DAY), ("hour", "h", HOUR), ("minute", "m", MINUTE), ("second", "s", SECOND))


def duration(seconds: float, *, short: bool = False, units: int | None = 2,
             seconds_with_days: bool = True) -> str:
    """`seconds` (rounded, never below 0) in its largest units: "1 day 6 hours" or, short,
    "1d 6h". `units`: how many units at most (None: all); `seconds_with_days`: False leaves the
    seconds out of a duration of a day or more. "" for 0: each caller words nothing its way."""
    left = max(0, int(round(seconds)))
    has_days = left >= DAY
    parts = []
    for name, letter, size in _UNITS:
        amount, left = divmod(left, size)
        if not amount or (size == SECOND and has_days and not seconds_with_days):
            continue
        plural = "s" if amount != 1 else ""
        parts.append(f"{amount}{letter}" if short else f"{amount} {name}{plural}")
    return " ".join(parts if units is None else parts[:units])
