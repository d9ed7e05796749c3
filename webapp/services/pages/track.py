"""A flag's track through its pipeline: the stages it went through and its history. Reads only."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    AuditEntry,
    PipelineRun,
    ReleasePipeline,
    StageExecution,
)
from webapp.services.pages.board import (
    Card,
    _card,
    _stages_of,
    _with_checks,
    _with_requests,
    with_holds,
)
from webapp.services.pipelines.describe import StageInfo

# --- A flag's track through its pipeline ----------------------------------------------------------


@dataclass(frozen=True)
class TrackStop:
    stage: StageInfo
    state: str  # done | current | next | skipped
    entered_at: datetime | None
    applied_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True)
class HistoryItem:
    at: datetime
    who: str
    what: str
    kind: str  # stage | audit


@dataclass(frozen=True)
class Track:
    run: PipelineRun
    pipeline: ReleasePipeline
    card: Card | None
    stops: list[TrackStop]
    history: list[HistoryItem]


def flag_track(project_id: int, feature_id: int, run_id: int | None = None) -> Track | None:
    """The flag's run in flight (else its latest run, or `run_id`) as a track of the pipeline's
    stages, with what happened at each and the run's full history (stage executions and audit
    entries). None when the flag was never in a pipeline."""
    statement = select(PipelineRun).where(PipelineRun.project_id == project_id,
                                          PipelineRun.feature_id == feature_id)
    if run_id is not None:
        statement = statement.where(PipelineRun.id == run_id)
    run = db.session.scalar(
        statement.order_by(PipelineRun.ended_at.is_not(None), PipelineRun.id.desc()).limit(1))
    if run is None:
        return None
    pipeline = db.session.execute(
        select(ReleasePipeline).where(ReleasePipeline.id == run.pipeline_id)).scalar_one()
    stages = _stages_of(run)
    executions = {e.stage_id: e for e in db.session.scalars(
        select(StageExecution).where(StageExecution.run_id == run.id))}
    stops = []
    for stage in stages:
        execution = executions.get(stage.id)
        if execution is not None and execution.completed_at is not None:
            state = "done"
        elif stage.position == run.stage_position and run.ended_at is None:
            state = "current"
        elif run.ended_at is not None and run.status != "launched" and execution is None:
            state = "skipped"
        else:
            state = "next"
        stops.append(TrackStop(stage, state, execution.entered_at if execution else None,
                               execution.applied_at if execution else None,
                               execution.completed_at if execution else None))
    history = [HistoryItem(e.created_at, e.actor_label, e.message, "audit")
               for e in db.session.scalars(
                   select(AuditEntry).where(AuditEntry.project_id == project_id,
                                            AuditEntry.feature_id == feature_id,
                                            AuditEntry.run_id == run.id))]
    names = {s.id: s for s in stages}
    for execution in executions.values():
        entered = names.get(execution.stage_id)
        label = (f"{entered.name} ({entered.environment})" if entered
                 else f"stage {execution.position + 1}")
        history.append(HistoryItem(execution.entered_at, "", f"Entered {label}", "stage"))
        if execution.completed_at is not None:
            history.append(HistoryItem(execution.completed_at, "", f"Completed {label}", "stage"))
    history.sort(key=lambda item: (item.at, item.kind != "stage"), reverse=True)
    card = None
    if stages and (run.ended_at is None or run.status == "launched"):
        row = _RunRow(run, run.feature.name)
        card = _with_requests([_card(row, stages, clock_now())])[0]
        if run.ended_at is None:
            card = _with_checks({0: [card]})[0][0]
            if run.hold_kind:
                card = with_holds({0: [card]}, [run], stages, clock_now())[0][0]
    return Track(run, pipeline, card, stops, history)


class _RunRow:
    """A run read like a board row (the card builder reads these attributes)."""

    def __init__(self, run: PipelineRun, name: str):
        self._run, self.name = run, name

    def __getattr__(self, item: str) -> Any:
        return getattr(self._run, item)
