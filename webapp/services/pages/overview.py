"""The project's pipelines at a glance, and launches per day. Reads only."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, bindparam, func, select

from webapp.clock import now as clock_now
from webapp.extensions import db
from webapp.models import (
    RUN_ACTIVE_STATUSES,
    Environment,
    PipelineRun,
    PipelineStage,
    ReleasePipeline,
)
from webapp.orm import UTCDateTime
from webapp.services.pipelines.catalog import LAUNCHED_DAYS

# --- Launches per day -----------------------------------------------------------------------------




@dataclass(frozen=True)
class Launches:
    since: datetime
    days: list[tuple[date, int]]

    @property
    def total(self) -> int:
        return sum(n for _, n in self.days)

    @property
    def peak(self) -> int:
        return max((n for _, n in self.days), default=0)


def launch_window(now: datetime, days: int = LAUNCHED_DAYS) -> datetime:
    """Where the last `days` days (today included) begin: midnight UTC, `days - 1` days ago."""
    first = now.date() - timedelta(days=days - 1)
    return now.replace(year=first.year, month=first.month, day=first.day,
                       hour=0, minute=0, second=0, microsecond=0)


def launched_per_day(pipeline_id: int, *, days: int = LAUNCHED_DAYS,
                     now: datetime | None = None) -> Launches:
    """Flags launched per UTC day over the last `days` days (today included), zeros kept."""
    now = now or clock_now()
    since = launch_window(now, days)
    first = since.date()
    found: dict[str, int] = {}
    rows: Sequence[Any] = db.session.connection().execute(
        _launched_per_day(), {"pipeline_id": pipeline_id, "since": since, "now": now}).all()
    for value, number in rows:
        found[str(value)[:10]] = number
    series = [(first + timedelta(days=n), 0) for n in range(days)]
    return Launches(since, [(d, found.get(d.isoformat(), 0)) for d, _ in series])


@lru_cache(maxsize=1)
def _launched_per_day() -> Select:
    """Built once: every board poll reads it."""
    day = func.date(PipelineRun.ended_at)
    return (select(day, func.count())
            .where(PipelineRun.pipeline_id == bindparam("pipeline_id"),
                   PipelineRun.status == "launched",
                   PipelineRun.ended_at >= bindparam("since", type_=UTCDateTime),
                   PipelineRun.ended_at <= bindparam("now", type_=UTCDateTime))
            .group_by(day))


# --- The project's pipelines at a glance ----------------------------------------------------------


@dataclass(frozen=True)
class PipelineGlance:
    pipeline: ReleasePipeline
    stages: list[tuple[str, str, int]]  # (stage name, environment, flags in it)
    in_flight: int
    launched: int

    @property
    def peak(self) -> int:
        return max((n for _, _, n in self.stages), default=0)


def overview(project_id: int) -> list[PipelineGlance]:
    """Every published pipeline of the project with flags per stage, in flight and launched in
    the last 30 days. Four statements, whatever the number of pipelines and flags."""
    pipelines = list(db.session.scalars(
        select(ReleasePipeline).where(ReleasePipeline.project_id == project_id,
                                      ReleasePipeline.status == "published",
                                      ReleasePipeline.deleted_at.is_(None))
        .order_by(ReleasePipeline.name, ReleasePipeline.id)))
    ids = [p.id for p in pipelines]
    if not ids:
        return []
    stages: dict[int, list[tuple[int, str, str]]] = {}
    for pid, position, name, env in db.session.execute(
        select(PipelineStage.pipeline_id, PipelineStage.position, PipelineStage.name,
               Environment.name)
        .outerjoin(Environment, Environment.id == PipelineStage.environment_id)
        .where(PipelineStage.pipeline_id.in_(ids)).order_by(PipelineStage.position)
    ):
        stages.setdefault(pid, []).append((position, name or f"Stage {position + 1}", env or "?"))
    counts = {(pid, pos): n for pid, pos, n in db.session.execute(
        select(PipelineRun.pipeline_id, PipelineRun.stage_position, func.count())
        .where(PipelineRun.pipeline_id.in_(ids), PipelineRun.status.in_(RUN_ACTIVE_STATUSES))
        .group_by(PipelineRun.pipeline_id, PipelineRun.stage_position))}
    now = clock_now()
    since = now - timedelta(days=LAUNCHED_DAYS)
    launched = dict(db.session.execute(
        select(PipelineRun.pipeline_id, func.count())
        .where(PipelineRun.pipeline_id.in_(ids), PipelineRun.status == "launched",
               PipelineRun.ended_at >= since, PipelineRun.ended_at <= now)
        .group_by(PipelineRun.pipeline_id)).all())
    glances = []
    for p in pipelines:
        per_stage = [(name, env, counts.get((p.id, pos), 0))
                     for pos, name, env in stages.get(p.id, [])]
        glances.append(PipelineGlance(p, per_stage, sum(n for _, _, n in per_stage),
                                      launched.get(p.id, 0)))
    return glances
