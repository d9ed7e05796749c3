"""Expected times that account for the release calendar: when each stage of a pipeline would act
for a flag added now (`preview_times`), and when a flag in flight is expected to act and launch
(`run_times`, `expected_launch`), with a human note where a window, a freeze or a stopped line
moves a stage later ("Production: next window Monday 09:00").

Pure reads: stops, freezes and windows known now are taken into account; a stopped line has no
known end, so every time after it is unknown (None).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from webapp.clock import now as clock_now
from webapp.models import WEEKDAYS, PipelineRun, PipelineStage
from webapp.services.runs import calendar
from webapp.services.runs.calendar import Hold, Memo


@dataclass(frozen=True)
class ExpectedStage:
    position: int
    name: str
    environment_id: int | None
    environment: str
    # When its trigger falls due by the pipeline's own timing, and when it is expected to act
    # and to be complete once windows, freezes and a stopped line are counted (None: unknown).
    due_at: datetime | None
    acts_at: datetime | None
    done_at: datetime | None
    hold: Hold | None  # what makes it act later than due (the first hold met), if anything
    note: str | None  # "Production: next window Monday 09:00"
    past: bool = False  # a stage the flag has completed already
    earliest: bool = False  # people decide first (approvals): the time is the earliest

    @property
    def delayed(self) -> bool:
        return self.hold is not None


@dataclass(frozen=True)
class ExpectedTimeline:
    stages: tuple[ExpectedStage, ...]
    launch_at: datetime | None
    computed_at: datetime

    @property
    def notes(self) -> list[str]:
        return [s.note for s in self.stages if s.note and not s.past]

    @property
    def launch_text(self) -> str:
        """"Expected launch Tuesday 14 Jan 10:00 UTC" or why it is unknown."""
        if self.launch_at is None:
            held = next((s for s in self.stages if not s.past and s.acts_at is None), None)
            if held is not None and held.note:
                return f"Expected launch unknown: {held.note}"
            return "Expected launch unknown"
        earliest = "at the earliest " if any(s.earliest for s in self.stages) else ""
        return f"Expected launch {earliest}{calendar.when_text(self.launch_at)}"


def note_for(hold: Hold, environment_id: int, opening: datetime | None, memo: Memo) -> str:
    """"Production: next window Monday 09:00" (the environment's time zone), "Production:
    frozen until …", "Production: line stopped by …"."""
    schedule = calendar.get_schedule(environment_id, memo)
    name = schedule.environment_name
    zone = ZoneInfo(schedule.timezone)
    if hold.kind == "window":
        if opening is None:
            return f"{name}: no deployment window opens"
        local = opening.astimezone(zone)
        return f"{name}: next window {WEEKDAYS[local.weekday()]} {local:%H:%M}"
    text = calendar.describe_hold(hold, zone=schedule.timezone)
    if hold.kind == "freeze":
        text = text.replace(f" ({hold.environment_name})", "")
    return f"{name}: {text[0].lower()}{text[1:]}"


def _act(environment_id: int, due: datetime | None, memo: Memo
         ) -> tuple[datetime | None, Hold | None, str | None]:
    """When a stage due at `due` acts: the next opening, the hold that matters (a freeze or
    stop met on the way, else the window) and its note."""
    if due is None:
        return None, None, None
    met: list[Hold] = []
    moment: datetime | None = due
    for _ in range(100):
        assert moment is not None
        hold = calendar.hold_at(environment_id, moment, memo)
        if hold is None:
            break
        met.append(hold)
        if hold.until is None or hold.until <= moment:
            moment = None
            break
        moment = hold.until
    if not met:
        return due, None, None
    opening = moment if moment is not None else None
    main = next((h for h in met if h.kind != "window"), met[0])
    note = note_for(main, environment_id, opening, memo)
    if main.kind != "window" and opening is not None and opening != main.until:
        schedule = calendar.get_schedule(environment_id, memo)
        local = opening.astimezone(ZoneInfo(schedule.timezone))
        note += f"; next window {WEEKDAYS[local.weekday()]} {local:%H:%M}"
    return opening, main, note


def _released_at(environment_id: int, at: datetime, memo: Memo) -> datetime | None:
    """When freezes and stops (not windows) stop holding the environment; None: a stop."""
    moment: datetime | None = at
    for _ in range(100):
        assert moment is not None
        hold = calendar.hold_at(environment_id, moment, memo, windows=False)
        if hold is None:
            return moment
        if hold.until is None or hold.until <= moment:
            return None
        moment = hold.until
    return None


def _rollout_steps(stage: PipelineStage, percent: int | None) -> tuple[int, int]:
    """(steps left after the current one, interval seconds) of the stage's phased rollout."""
    for action in stage.actions:
        if (action.action_type == "PHASED_ROLLOUT" and action.rollout_step
                and action.rollout_interval_seconds):
            current = percent if percent is not None else (action.rollout_initial or 0)
            if current >= 100:
                return 0, action.rollout_interval_seconds
            return math.ceil((100 - current) / action.rollout_step), \
                action.rollout_interval_seconds
    return 0, 0


def _finish(environment_id: int, acts: datetime | None, steps: int, interval: int,
            memo: Memo) -> datetime | None:
    """When a rollout that stepped at `acts` reaches 100 %: each step waits for an opening."""
    moment = acts
    for _ in range(steps):
        if moment is None:
            return None
        moment = calendar.next_opening(environment_id, moment + timedelta(seconds=interval), memo)
    return moment


def _wait(stage: PipelineStage) -> timedelta:
    if stage.trigger_type == "WAIT_FOR":
        return timedelta(seconds=stage.wait_seconds or 0)
    return timedelta(0)


def _walk(stages: Sequence[PipelineStage], start: datetime | None, memo: Memo,
          earliest: bool = False) -> tuple[list[ExpectedStage], datetime | None]:
    points: list[ExpectedStage] = []
    moment = start
    for stage in stages:
        env_id = stage.environment_id
        env_name = stage.environment.name if stage.environment else ""
        due = None if moment is None else moment + _wait(stage)
        if env_id is None:
            acts, hold, note = due, None, None
        else:
            acts, hold, note = _act(env_id, due, memo)
        steps, interval = _rollout_steps(stage, None)
        done = acts if env_id is None else _finish(env_id, acts, steps, interval, memo)
        needs = bool(stage.environment and stage.environment.minimum_change_request_approvals)
        points.append(ExpectedStage(stage.position, stage.name or env_name, env_id, env_name,
                                    due, acts, done, hold, note, earliest=earliest))
        earliest = earliest or needs
        moment = done
    return points, moment


def preview_times(stages: Sequence[PipelineStage], start: datetime | None = None,
                  memo: Memo | None = None) -> ExpectedTimeline:
    """When each of these stages (in order; a draft's or a published pipeline's) would act and
    be done for a flag added at `start` (now), windows and known freezes counted."""
    memo = memo or Memo()
    start = start or clock_now()
    points, launch = _walk(stages, start, memo)
    return ExpectedTimeline(tuple(points), launch, start)


def run_times(run: PipelineRun, at: datetime | None = None, memo: Memo | None = None
              ) -> ExpectedTimeline:
    """When a flag in flight is expected to act in its current stage and the ones after it, and
    to launch. Stages it completed are `past`. A paused flag counts from now with the time it
    has left; one held by a freeze or a stopped line from the hold's end (unknown for a stop);
    one waiting for approvals from now, as the earliest."""
    memo = memo or Memo()
    at = at or clock_now()
    stages = list(run.pipeline.stages)
    points: list[ExpectedStage] = [
        ExpectedStage(s.position, s.name or (s.environment.name if s.environment else ""),
                      s.environment_id, s.environment.name if s.environment else "",
                      None, None, None, None, None, past=True)
        for s in stages[:run.stage_position]]
    if run.ended_at is not None or run.stage_position >= len(stages):
        return ExpectedTimeline(tuple(points), run.ended_at, at)
    current = stages[run.stage_position]
    env_id = current.environment_id
    env_name = current.environment.name if current.environment else ""
    earliest = False
    if run.status == "paused":
        due: datetime | None = at + timedelta(seconds=run.paused_remaining_seconds or 0)
    elif run.status in ("awaiting_approval", "halted"):
        due, earliest = at, True
    elif run.hold_kind in ("freeze", "stop") and env_id is not None:
        # Held in place: its clock restarts when nothing holds it any more.
        left = (run.held_due_at - run.held_since) if run.held_due_at and run.held_since \
            else timedelta(0)
        resumes = _released_at(env_id, at, memo)
        due = None if resumes is None else resumes + max(left, timedelta(0))
    else:
        due = max(run.due_at, at) if run.due_at else at
    acts, hold, note = (due, None, None) if env_id is None else _act(env_id, due, memo)
    rolling = run.rollout_percent is not None and run.status in ("rolling_out", "watching")
    steps, interval = _rollout_steps(current, run.rollout_percent if rolling else None)
    if rolling:
        steps = max(0, steps - 1)  # the step due next is `acts`
    done = _finish(env_id, acts, steps, interval, memo) if env_id else acts
    points.append(ExpectedStage(current.position, current.name or env_name, env_id, env_name,
                                due, acts, done, hold, note, earliest=earliest))
    later, launch = _walk(stages[run.stage_position + 1:], done, memo, earliest)
    points.extend(later)
    return ExpectedTimeline(tuple(points), launch, at)


def expected_launch(run: PipelineRun, at: datetime | None = None, memo: Memo | None = None
                    ) -> datetime | None:
    """When the flag is expected to launch (None: unknown, e.g. while the line is stopped)."""
    return run_times(run, at, memo).launch_at
