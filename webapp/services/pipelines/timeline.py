"""The timeline preview: when each stage of a pipeline would act if a flag were added now.

A stage acts when its trigger fires (at once for ON_ENTER, after its wait for WAIT_FOR, counted
from when the flag entered it); it is complete when its actions ran and, for a phased rollout,
the rollout reached 100 %, which takes ceil((100 - initial) / step) intervals. The flag then
enters the next stage. Stages whose environment needs approvals wait for people, so every time
after such a stage is the earliest possible.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

from webapp.durations import duration
from webapp.models import PipelineStage, StageAction


@dataclass(frozen=True)
class Rollout:
    initial: int
    duration_seconds: int

    @property
    def text(self) -> str:
        if self.duration_seconds == 0:
            return f"phased {self.initial} % at once"
        return f"phased {self.initial} % → 100 % over {human_duration(self.duration_seconds)}"


@dataclass(frozen=True)
class StagePoint:
    position: int
    name: str
    environment: str
    wait_seconds: int
    acts_after: int  # seconds from adding the flag until the stage's actions run
    done_after: int  # ... until the stage is complete (rollout at 100 %)
    rollout: Rollout | None
    approvals: int
    earliest: bool  # an earlier stage waits for approvals, so this time is the earliest

    @property
    def when(self) -> str:
        text = "at once" if self.acts_after == 0 else f"after {human_duration(self.acts_after)}"
        return f"at the earliest {text}" if self.earliest and self.acts_after else text

    @property
    def text(self) -> str:
        parts = [f"{self.name} {self.when}"]
        if self.rollout:
            parts.append(self.rollout.text)
        if self.approvals:
            parts.append(f"needs {self.approvals} approval{'s' if self.approvals != 1 else ''}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Timeline:
    stages: list[StagePoint]
    total_seconds: int

    @property
    def sentence(self) -> str:
        if not self.stages:
            return "Add a stage to see when a flag would move through this pipeline."
        return "If a flag is added now: " + "; ".join(point.text for point in self.stages) + "."

    @property
    def launched(self) -> str:
        if not self.stages:
            return ""
        total = self.total_seconds
        when = "at once" if total == 0 else f"after {human_duration(total)}"
        earliest = any(point.approvals for point in self.stages)
        return f"Launched {'at the earliest ' if earliest and self.total_seconds else ''}{when}."


def preview(stages: Sequence[PipelineStage]) -> Timeline:
    """The timeline of these stages (in order) for a flag added now."""
    points = []
    clock = 0
    approvals_before = False
    for stage in stages:
        wait = (stage.wait_seconds or 0) if stage.trigger_type == "WAIT_FOR" else 0
        acts = clock + wait
        rollout = _rollout(stage.actions)
        done = acts + (rollout.duration_seconds if rollout else 0)
        approvals = stage.environment.minimum_change_request_approvals if stage.environment else 0
        environment = stage.environment.name if stage.environment else ""
        points.append(StagePoint(
            position=stage.position,
            name=stage.name or environment or f"Stage {stage.position + 1}",
            environment=environment,
            wait_seconds=wait, acts_after=acts, done_after=done, rollout=rollout,
            approvals=approvals, earliest=approvals_before,
        ))
        approvals_before = approvals_before or approvals > 0
        clock = done
    return Timeline(points, clock)


def rollout_duration(initial: int, step: int, interval_seconds: int) -> int:
    """Seconds from the first step (initial %) to 100 %."""
    if initial >= 100:
        return 0
    return math.ceil((100 - initial) / step) * interval_seconds


def _rollout(actions: Sequence[StageAction]) -> Rollout | None:
    for action in actions:
        if (action.action_type == "PHASED_ROLLOUT" and action.rollout_initial
                and action.rollout_step and action.rollout_interval_seconds
                and 0 < action.rollout_initial <= 100 and action.rollout_step > 0):
            return Rollout(action.rollout_initial, rollout_duration(
                action.rollout_initial, action.rollout_step, action.rollout_interval_seconds))
    return None


def human_duration(seconds: int) -> str:
    """3 days; 1 day 6 hours; 18 hours; 45 minutes (the two largest units)."""
    return duration(seconds) or "0 seconds"
