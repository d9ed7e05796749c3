"""A flag's run as the pages show it: its stages step by step, time left, the flags of a
pipeline per stage, and what can still be added. Reads only.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    Feature,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    StageExecution,
)
from webapp.services.errors import NotFound
from webapp.services.lookups import one_in
from webapp.services.pipelines import describe

# --- Reading for the panels -----------------------------------------------------------------------


@dataclass
class StageStep:
    stage: PipelineStage
    execution: StageExecution | None
    state: str  # done | current | next


@dataclass
class RunView:
    run: PipelineRun
    steps: list[StageStep]

    @property
    def current(self) -> PipelineStage | None:
        return self.run.stage


def run_view(run: PipelineRun) -> RunView:
    executions = {e.stage_id: e for e in db.session.scalars(
        select(StageExecution).where(StageExecution.run_id == run.id))}
    stages = db.session.scalars(
        select(PipelineStage).where(PipelineStage.pipeline_id == run.pipeline_id)
        .options(selectinload(PipelineStage.environment), selectinload(PipelineStage.actions))
        .order_by(PipelineStage.position))
    steps = []
    for stage in stages:
        execution = executions.get(stage.id)
        if execution is not None and execution.completed_at is not None:
            state = "done"
        elif stage.position == run.stage_position and run.ended_at is None:
            state = "current"
        else:
            state = "next"
        steps.append(StageStep(stage, execution, state))
    return RunView(run, steps)


def flag_run(project_id: int, feature_id: int) -> RunView | None:
    """The flag's run in flight, or else its latest ended run (for the track and history)."""
    run = db.session.scalar(
        select(PipelineRun).where(PipelineRun.project_id == project_id,
                                  PipelineRun.feature_id == feature_id)
        .order_by(PipelineRun.ended_at.is_not(None), PipelineRun.id.desc()).limit(1))
    return None if run is None else run_view(run)


def addable_pipelines(project_id: int) -> list[ReleasePipeline]:
    return list(db.session.scalars(
        select(ReleasePipeline).where(ReleasePipeline.project_id == project_id,
                                      ReleasePipeline.status == "published",
                                      ReleasePipeline.deleted_at.is_(None))
        .order_by(ReleasePipeline.name)))


def idle_features(project_id: int) -> list[Feature]:
    """Flags of the project that are in no pipeline now."""
    in_flight = select(PipelineRun.feature_id).where(PipelineRun.project_id == project_id,
                                                     PipelineRun.ended_at.is_(None))
    return list(db.session.scalars(
        select(Feature).where(Feature.project_id == project_id, Feature.id.not_in(in_flight))
        .order_by(Feature.name)))


@dataclass
class PipelineFlags:
    pipeline: ReleasePipeline
    by_stage: list[tuple[PipelineStage, list[tuple[PipelineRun, str]], int]]
    launched_count: int


def pipeline_flags(project_id: int, pipeline_id: int, per_stage: int = 50) -> PipelineFlags:
    """Flags in flight in the pipeline, per stage (with their names), and how many launched."""
    pipeline = db.session.get(ReleasePipeline, pipeline_id)
    if pipeline is None or pipeline.project_id != project_id:
        raise NotFound("Pipeline not found.")
    rows = db.session.execute(
        select(PipelineRun, Feature.name)
        .join(Feature, Feature.id == PipelineRun.feature_id)
        .where(PipelineRun.pipeline_id == pipeline_id, PipelineRun.ended_at.is_(None))
        .order_by(PipelineRun.stage_position, Feature.name)
    ).all()
    stages = list(db.session.scalars(
        select(PipelineStage).where(PipelineStage.pipeline_id == pipeline_id)
        .options(selectinload(PipelineStage.environment)).order_by(PipelineStage.position)))
    grouped: dict[int, list[tuple[PipelineRun, str]]] = {}
    for run, name in rows:
        grouped.setdefault(run.stage_position, []).append((run, name))
    launched = db.session.scalar(
        select(func.count()).select_from(PipelineRun)
        .where(PipelineRun.pipeline_id == pipeline_id, PipelineRun.status == "launched")) or 0
    return PipelineFlags(
        pipeline, [(s, grouped.get(s.position, [])[:per_stage], len(grouped.get(s.position, [])))
                   for s in stages], launched)


def time_left(run: PipelineRun, now: datetime | None = None) -> str:
    """What the card says about time: "in 2d 3h", "due now", "paused (1h left)"."""
    if run.status == "paused":
        return f"paused ({describe.duration_words(run.paused_remaining_seconds or 0)} left)"
    if run.hold_kind == "stop":
        return "held: line stopped"
    if run.hold_kind == "freeze":
        return "held: frozen"
    if run.due_at is None:
        return ""
    seconds = (run.due_at - (now or clock_now())).total_seconds()
    if run.hold_kind == "window" and seconds > 0:
        return f"waits for its window (in {describe.duration_words(seconds)})"
    return "due now" if seconds <= 0 else f"in {describe.duration_words(seconds)}"


# --- Lookups ------------------------------------------------------------------------------------


def get_run(project_id: int, run_id: int) -> PipelineRun:
    """The project's run; NotFound otherwise."""
    return one_in(PipelineRun, run_id, "This flag is not in that pipeline.", project_id=project_id)


def latest_run_id(pipeline_id: int, feature_id: int) -> int:
    """The flag's run in the pipeline: the one in flight, else the latest (NotFound if the flag
    never was in the pipeline)."""
    run_id = db.session.scalar(
        select(PipelineRun.id)
        .where(PipelineRun.pipeline_id == pipeline_id, PipelineRun.feature_id == feature_id)
        .order_by(PipelineRun.ended_at.is_not(None), PipelineRun.id.desc()).limit(1))
    if run_id is None:
        raise NotFound("This flag is not in this pipeline.")
    return run_id


def run_and_flag_name(run_id: int) -> tuple[PipelineRun, str]:
    """The run and its flag's name (one query)."""
    run, name = db.session.execute(
        select(PipelineRun, Feature.name).join(Feature, Feature.id == PipelineRun.feature_id)
        .where(PipelineRun.id == run_id)).one()
    return run, name
