"""The release calendar's records: what the screens, the API and the engine read.

Plain frozen values (a window, an environment's schedule, a hold, a freeze, a stop, what a
release did), the per-call `Memo` they are read into, the audit event names, and the wording
of a hold. No database access here.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from webapp.clock import now as clock_now
from webapp.models import WEEKDAYS

HoldKind = Literal["window", "freeze", "stop"]
MAX_REASON = 2000

EVENT_WINDOWS = "DEPLOYMENT_WINDOWS_UPDATED"
EVENT_FREEZE_CREATED = "FREEZE_CREATED"
EVENT_FREEZE_UPDATED = "FREEZE_UPDATED"
EVENT_FREEZE_LIFTED = "FREEZE_LIFTED"
EVENT_FREEZE_STARTED = "FREEZE_STARTED"
EVENT_FREEZE_ENDED = "FREEZE_ENDED"
EVENT_LINE_STOPPED = "LINE_STOPPED"
EVENT_LINE_LIFTED = "LINE_LIFTED"
EVENT_HELD = "RELEASE_PIPELINE_FEATURE_HELD"
EVENT_RELEASED = "RELEASE_PIPELINE_FEATURE_RELEASED"
EVENT_BREAK_GLASS = "CHANGE_REQUEST_BREAK_GLASS"
EVENT_TYPES = (EVENT_WINDOWS, EVENT_FREEZE_CREATED, EVENT_FREEZE_UPDATED, EVENT_FREEZE_LIFTED,
               EVENT_FREEZE_STARTED, EVENT_FREEZE_ENDED, EVENT_LINE_STOPPED, EVENT_LINE_LIFTED,
               EVENT_HELD, EVENT_RELEASED, EVENT_BREAK_GLASS)


@dataclass(frozen=True)
class Window:
    """Weekly opening hours: `weekday` 0 = Monday, minutes after local midnight."""

    weekday: int
    opens_minute: int
    closes_minute: int

    @property
    def text(self) -> str:
        return f"{WEEKDAYS[self.weekday]} {hhmm(self.opens_minute)}–{hhmm(self.closes_minute)}"

    def as_dict(self) -> dict[str, Any]:
        return {"weekday": self.weekday, "day": WEEKDAYS[self.weekday],
                "opens": hhmm(self.opens_minute), "closes": hhmm(self.closes_minute)}


@dataclass(frozen=True)
class Schedule:
    """An environment's deployment windows (none: always open) in its time zone."""

    environment_id: int
    environment_name: str
    timezone: str
    windows: tuple[Window, ...]

    @property
    def always_open(self) -> bool:
        return not self.windows

    def as_dict(self) -> dict[str, Any]:
        return {"environment_id": self.environment_id, "environment": self.environment_name,
                "timezone": self.timezone, "windows": [w.as_dict() for w in self.windows]}


@dataclass(frozen=True)
class Hold:
    """Why transitions into an environment wait: a closed window, a freeze, a stopped line.

    `until` is when it ends if known (the next opening, the freeze's end; None for a stopped
    line, which lasts until lifted). `who`/`why`/`since` name the person, reason and start of a
    freeze or stop (a window has none). `source_id` is the freeze's or stop's id."""

    kind: HoldKind
    scope: Literal["environment", "project", "organisation"]
    until: datetime | None
    who: str = ""
    why: str = ""
    since: datetime | None = None
    source_id: int | None = None
    environment_name: str = ""

    @property
    def text(self) -> str:
        """One line for a banner or an audit entry."""
        return describe_hold(self)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "scope": self.scope, "id": self.source_id, "who": self.who,
                "why": self.why, "since": iso(self.since), "until": iso(self.until),
                "text": self.text}


@dataclass(frozen=True)
class FreezeView:
    id: int
    organisation_id: int
    project_id: int | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    all_environments: bool
    environment_ids: tuple[int, ...]
    environment_names: tuple[str, ...]
    created_by: str
    created_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None
    version: int

    def state(self, at: datetime) -> Literal["scheduled", "active", "ended", "lifted"]:
        if self.lifted_at is not None:
            return "lifted"
        if at < self.starts_at:
            return "scheduled"
        return "active" if at < self.ends_at else "ended"

    @property
    def scope(self) -> Literal["project", "organisation"]:
        return "organisation" if self.project_id is None else "project"

    @property
    def environments_text(self) -> str:
        return "all environments" if self.all_environments else ", ".join(self.environment_names)

    def as_dict(self, at: datetime | None = None) -> dict[str, Any]:
        return {"id": self.id, "scope": self.scope, "organisation_id": self.organisation_id,
                "project_id": self.project_id, "starts_at": iso(self.starts_at),
                "ends_at": iso(self.ends_at), "reason": self.reason,
                "all_environments": self.all_environments,
                "environments": list(self.environment_ids), "created_by": self.created_by,
                "created_at": iso(self.created_at), "lifted_at": iso(self.lifted_at),
                "lifted_by": self.lifted_by, "version": self.version,
                "state": self.state(at or clock_now())}


@dataclass(frozen=True)
class StopView:
    id: int
    organisation_id: int
    project_id: int | None
    reason: str
    stopped_by: str
    stopped_at: datetime
    lifted_at: datetime | None
    lifted_by: str | None

    @property
    def scope(self) -> Literal["project", "organisation"]:
        return "organisation" if self.project_id is None else "project"

    @property
    def active(self) -> bool:
        return self.lifted_at is None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "scope": self.scope, "organisation_id": self.organisation_id,
                "project_id": self.project_id, "reason": self.reason,
                "stopped_by": self.stopped_by, "stopped_at": iso(self.stopped_at),
                "lifted_at": iso(self.lifted_at), "lifted_by": self.lifted_by,
                "active": self.active}


@dataclass
class Released:
    """What a lift or a freeze's end did: runs resumed (their bells to ring), runs still held by
    another freeze or stop, and the spread of their due times."""

    resumed: int = 0
    still_held: int = 0
    first_due: datetime | None = None
    last_due: datetime | None = None
    bells: list[Any] = field(default_factory=list)  # engine.Bell (typed Any: no import cycle)


@dataclass
class Memo:
    """Per-call memo of schedules, freezes and stops (one engine batch, one sweep, one page)."""

    schedules: dict[int, Schedule] = field(default_factory=dict)
    environments: dict[int, tuple[int, int, str]] = field(default_factory=dict)
    freezes: dict[int, list[FreezeView]] = field(default_factory=dict)  # by organisation
    stops: dict[int, list[StopView]] = field(default_factory=dict)  # by organisation

    def fresh(self) -> None:
        """Forget freezes and stops (read again in the next transaction); keep schedules."""
        self.freezes.clear()
        self.stops.clear()


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with a trailing Z (None stays None)."""
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def describe_hold(hold: Hold, *, zone: str = "UTC") -> str:
    """"Line stopped by ana@example.com: incident 42", "Frozen until 3 Jan 00:00 UTC by …:
    holidays", "Production: next window Monday 09:00"."""
    if hold.kind == "stop":
        scope = "for the organisation" if hold.scope == "organisation" else ""
        text = f"Line stopped {scope} by {hold.who}".replace("  ", " ")
        return f"{text}: {hold.why}" if hold.why else text
    if hold.kind == "freeze":
        where = f" ({hold.environment_name})" if hold.environment_name else ""
        until = f" until {when_text(hold.until, zone)}" if hold.until else ""
        text = f"Frozen{where}{until} by {hold.who}"
        return f"{text}: {hold.why}" if hold.why else text
    prefix = f"{hold.environment_name}: " if hold.environment_name else ""
    if hold.until is None:
        return f"{prefix}no deployment window opens"
    return f"{prefix}next window {when_text(hold.until, zone)}"


def when_text(moment: datetime, zone: str = "UTC") -> str:
    """"Monday 09:00" in the given zone (with the zone's name unless it is UTC-less wording)."""
    local = moment.astimezone(ZoneInfo(zone))
    text = f"{WEEKDAYS[local.weekday()]} {local:%d %b %H:%M}"
    return text if zone != "UTC" else f"{text} UTC"
