"""Timelines with the release calendar applied: when each stage of a pipeline (or of a flag
in flight) is expected to act, in its environment's time zone, and the expected launch.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from webapp.clock import now as clock_now
from webapp.models import PipelineRun, PipelineStage
from webapp.services.pages.calendar_holds import schedule_or_none
from webapp.services.pages.calendar_words import moment_text
from webapp.services.runs import calendar, calendar_timeline


@dataclass(frozen=True)
class CalendarTimeline:
    """calendar_timeline's expected times, in words: each stage's note ("Production: next
    window Monday 09:00") and time in its environment's zone, and the expected launch."""

    expected: calendar_timeline.ExpectedTimeline
    zones: tuple[str, ...]  # per stage, its environment's time zone
    now: datetime
    why_unknown: str = ""  # what holds the flag when no stage says it

    @property
    def notes(self) -> list[str]:
        return self.expected.notes

    @property
    def blocked(self) -> bool:
        return self.expected.launch_at is None

    def note_at(self, index: int) -> str:
        stages = self.expected.stages
        return (stages[index].note or "") if 0 <= index < len(stages) else ""

    def when_at(self, index: int) -> str:
        """When stage `index` is expected to act, in its environment's zone."""
        stages = self.expected.stages
        if not 0 <= index < len(stages) or stages[index].past:
            return ""
        if stages[index].acts_at is None:
            return "not known while held"
        return moment_text(stages[index].acts_at, self.zones[index], now=self.now)

    @property
    def launched(self) -> str:
        """"Expected launch: Tuesday 09:00 Europe/Berlin." (the earliest, when people approve
        first), or why it cannot be known."""
        launch = self.expected.launch_at
        if launch is None:
            held = next((s.note for s in self.expected.stages
                         if not s.past and s.acts_at is None and s.note), "")
            # The stage's note is listed beside it already; say only what nothing else says.
            why = self.why_unknown if not held else ""
            return f"Expected launch: not known ({why})." if why else (
                "Expected launch: not known while held.")
        earliest = "at the earliest " if any(s.earliest for s in self.expected.stages) else ""
        zone_name = self.zones[-1] if self.zones else "UTC"
        return f"Expected launch: {earliest}{moment_text(launch, zone_name, now=self.now)}."


def _zones(expected: calendar_timeline.ExpectedTimeline, memo: calendar.Memo
           ) -> tuple[str, ...]:
    zones = []
    for stage in expected.stages:
        schedule = schedule_or_none(stage.environment_id, memo)
        zones.append(schedule.timezone if schedule else "UTC")
    return tuple(zones)


def pipeline_plan(stages: Sequence[PipelineStage], now: datetime | None = None
                  ) -> CalendarTimeline:
    """The timeline preview with the calendar applied: a flag added now."""
    now = now or clock_now()
    memo = calendar.Memo()
    expected = calendar_timeline.preview_times(stages, now, memo)
    return CalendarTimeline(expected, _zones(expected, memo), now)


def flag_plan(run: PipelineRun, now: datetime | None = None) -> CalendarTimeline | None:
    """When a flag in flight is expected to launch, the calendar applied (None once ended)."""
    if run.ended_at is not None:
        return None
    now = now or clock_now()
    memo = calendar.Memo()
    expected = calendar_timeline.run_times(run, now, memo)
    why = "the line is stopped until an admin lifts it" if run.hold_kind == "stop" else ""
    return CalendarTimeline(expected, _zones(expected, memo), now, why)
