"""The release calendar: deployment windows, freezes and the stop-the-line switch.

When may a stage apply into an environment? `hold_at(environment_id, at)` answers with the
`Hold` that forbids it (stop > freeze > window) or None; `next_opening` with the first moment it
may. The engine asks `hold_due_run` / `hold_batch` before it applies anything; a run held by a
freeze or a stopped line is released, with the time it had left, when the freeze ends or the
line is lifted. The database is the truth: the sweeper's `tick` starts and ends freezes whose
time came and releases any run whose hold is no longer active.

Callers use the names below (`calendar.create_freeze`); each lives in the module of its job:

- records: the values the screens, the API and the engine read, the audit event names, wording
- scope: an environment's project and organisation, who may change the calendar, who hears
- windows: weekly opening hours in a time zone, their parsing, `set_windows`
- holds: what holds an environment at a moment, the next opening, banners, a run's hold
- held_runs: holding runs (the engine's questions, a freeze or stop starting) and releasing them
- freezes: create, change, lift; a freeze starting and ending
- stops: stop the line and lift it
- break_glass: committing a change request while frozen or stopped
- sweeper: the periodic `tick`
"""

from webapp.services.runs.calendar.break_glass import check_commit
from webapp.services.runs.calendar.freezes import (
    create_freeze,
    get_freeze,
    lift_freeze,
    list_freezes,
    update_freeze,
)
from webapp.services.runs.calendar.held_runs import (
    NO_HOLD,
    hold_batch,
    hold_due_run,
    hold_in_flight,
    memo_for,
    release_hold,
    release_max_spread_seconds,
    release_per_second,
    spread_due_times,
)
from webapp.services.runs.calendar.holds import (
    hold_at,
    hold_of_run,
    holds_for_project,
    is_open,
    next_opening,
    next_window_text,
    stop_for,
)
from webapp.services.runs.calendar.records import (
    EVENT_BREAK_GLASS,
    EVENT_FREEZE_CREATED,
    EVENT_FREEZE_ENDED,
    EVENT_FREEZE_LIFTED,
    EVENT_FREEZE_STARTED,
    EVENT_FREEZE_UPDATED,
    EVENT_HELD,
    EVENT_LINE_LIFTED,
    EVENT_LINE_STOPPED,
    EVENT_RELEASED,
    EVENT_TYPES,
    EVENT_WINDOWS,
    MAX_REASON,
    FreezeView,
    Hold,
    HoldKind,
    Memo,
    Released,
    Schedule,
    StopView,
    Window,
    describe_hold,
    hhmm,
    iso,
    when_text,
)
from webapp.services.runs.calendar.scope import may_administer, notify_scope
from webapp.services.runs.calendar.stops import get_stop, lift_stop, stop_history, stop_line
from webapp.services.runs.calendar.sweeper import tick
from webapp.services.runs.calendar.windows import (
    MAX_WINDOWS,
    get_schedule,
    next_window_opening,
    parse_hhmm,
    parse_windows,
    set_windows,
    timezone_names,
    valid_timezone,
    window_closes_at,
    window_intervals,
)

__all__ = [
    "EVENT_BREAK_GLASS", "EVENT_FREEZE_CREATED", "EVENT_FREEZE_ENDED", "EVENT_FREEZE_LIFTED",
    "EVENT_FREEZE_STARTED", "EVENT_FREEZE_UPDATED", "EVENT_HELD", "EVENT_LINE_LIFTED",
    "EVENT_LINE_STOPPED", "EVENT_RELEASED", "EVENT_TYPES", "EVENT_WINDOWS", "MAX_REASON",
    "MAX_WINDOWS", "NO_HOLD", "FreezeView", "Hold", "HoldKind", "Memo", "Released", "Schedule",
    "StopView", "Window", "check_commit", "create_freeze", "describe_hold", "get_freeze",
    "get_schedule", "get_stop", "hhmm", "hold_at", "hold_batch", "hold_due_run", "hold_in_flight",
    "hold_of_run", "holds_for_project", "is_open", "iso", "lift_freeze", "lift_stop",
    "list_freezes", "may_administer", "memo_for", "next_opening", "next_window_opening",
    "next_window_text", "notify_scope", "parse_hhmm", "parse_windows", "release_hold",
    "release_max_spread_seconds", "release_per_second", "set_windows", "spread_due_times",
    "stop_for", "stop_history", "stop_line", "tick", "timezone_names", "update_freeze",
    "valid_timezone", "when_text", "window_closes_at", "window_intervals",
]
