"""Reading pipelines: the project's list, one pipeline (with a project check), segments to choose
from, and the questions builders ask (flags in flight, stages with history).
"""

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from webapp.clock import now
from webapp.extensions import db
from webapp.models import (
    ChangeRequest,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
    Segment,
    StageAction,
    StageExecution,
)
from webapp.services.errors import NotFound

# ---------------------------------------------------------------------------------------------
# Reading

# "Launched" counts runs that launched in this many days (the pipelines list and the boards).
LAUNCHED_DAYS = 30


@dataclass(frozen=True)
class PipelineSummary:
    pipeline: ReleasePipeline
    stage_count: int
    in_flight: int
    launched_recently: int


def list_pipelines(project_id: int) -> list[PipelineSummary]:
    """The project's live pipelines with their stage count, flags in flight and flags launched in
    the last 30 days (three grouped queries, whatever the number of pipelines)."""
    pipelines = list(db.session.scalars(
        select(ReleasePipeline)
        .where(ReleasePipeline.project_id == project_id, ReleasePipeline.deleted_at.is_(None))
        .order_by(ReleasePipeline.name, ReleasePipeline.id)
    ))
    ids = [p.id for p in pipelines]
    if not ids:
        return []
    stages = dict(db.session.execute(
        select(PipelineStage.pipeline_id, func.count())
        .where(PipelineStage.pipeline_id.in_(ids)).group_by(PipelineStage.pipeline_id)
    ).all())
    in_flight = dict(db.session.execute(
        select(PipelineRun.pipeline_id, func.count())
        .where(PipelineRun.pipeline_id.in_(ids), PipelineRun.ended_at.is_(None))
        .group_by(PipelineRun.pipeline_id)
    ).all())
    launched = dict(db.session.execute(
        select(PipelineRun.pipeline_id, func.count())
        .where(
            PipelineRun.pipeline_id.in_(ids),
            PipelineRun.end_reason == "launched",
            PipelineRun.ended_at >= now() - timedelta(days=LAUNCHED_DAYS),
        )
        .group_by(PipelineRun.pipeline_id)
    ).all())
    return [
        PipelineSummary(p, stages.get(p.id, 0), in_flight.get(p.id, 0), launched.get(p.id, 0))
        for p in pipelines
    ]


def get_pipeline(project_id: int, pipeline_id: int) -> ReleasePipeline:
    """A live pipeline of the project with its stages, environments, actions and segments loaded.

    Raises NotFound for a deleted pipeline or one of another project.
    """
    pipeline = db.session.scalar(
        select(ReleasePipeline)
        .where(
            ReleasePipeline.id == pipeline_id,
            ReleasePipeline.project_id == project_id,
            ReleasePipeline.deleted_at.is_(None),
        )
        .options(
            selectinload(ReleasePipeline.stages).joinedload(PipelineStage.environment),
            selectinload(ReleasePipeline.stages).selectinload(PipelineStage.checks),
            selectinload(ReleasePipeline.stages)
            .selectinload(PipelineStage.actions)
            .joinedload(StageAction.segment)
            .load_only(Segment.name, Segment.project_id, Segment.is_system),
        )
        .execution_options(populate_existing=True)
    )
    if pipeline is None:
        raise NotFound("Pipeline not found.")
    return pipeline


def find_pipeline(project_id: int, pipeline_id: int) -> ReleasePipeline:
    """The live pipeline row alone (no stages), for callers that only need to know it exists in
    this project before an edit service loads it whole. NotFound otherwise."""
    pipeline = db.session.scalar(
        select(ReleasePipeline).where(
            ReleasePipeline.id == pipeline_id,
            ReleasePipeline.project_id == project_id,
            ReleasePipeline.deleted_at.is_(None),
        )
    )
    if pipeline is None:
        raise NotFound("Pipeline not found.")
    return pipeline


def segment_choices(project_id: int) -> list[Segment]:
    """The segments a pipeline action may target: the project's, without hidden system ones."""
    return list(db.session.scalars(
        select(Segment)
        .where(Segment.project_id == project_id, Segment.is_system.is_(False))
        .order_by(Segment.name, Segment.id)
    ))


def in_flight_count(pipeline_id: int) -> int:
    return db.session.scalar(
        select(func.count()).select_from(PipelineRun)
        .where(PipelineRun.pipeline_id == pipeline_id, PipelineRun.ended_at.is_(None))
    ) or 0


def pipelines_using_segment(segment_id: int) -> list[ReleasePipeline]:
    """Live pipelines with an action on this segment (a segment they use cannot be deleted)."""
    return list(db.session.scalars(
        select(ReleasePipeline)
        .join(PipelineStage, PipelineStage.pipeline_id == ReleasePipeline.id)
        .join(StageAction, StageAction.stage_id == PipelineStage.id)
        .where(StageAction.segment_id == segment_id, ReleasePipeline.deleted_at.is_(None))
        .distinct()
        .order_by(ReleasePipeline.name)
    ))


def stages_have_history(stage_ids: list[int]) -> bool:
    """Whether runs, stage executions or change requests point at any of these stages (a
    pipeline that was published and then unpublished): such a stage must stay."""
    if not stage_ids:
        return False
    return any(
        db.session.scalar(select(column).where(column.in_(stage_ids)).limit(1)) is not None
        for column in (PipelineRun.stage_id, StageExecution.stage_id, ChangeRequest.stage_id))


def _project_ids(model, project_id: int, visible_only: bool = False) -> set[int]:
    query = select(model.id).where(model.project_id == project_id)
    if visible_only:
        query = query.where(model.is_system.is_(False))
    return set(db.session.scalars(query))
