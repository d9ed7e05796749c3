"""Release pipelines (drafts and published), their stages and actions, and the runs of flags."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.clock import now
from webapp.extensions import Model
from webapp.models.health import StageHealthCheck
from webapp.models.platform import Environment, Feature, Project, Segment

TRIGGER_TYPES = ("ON_ENTER", "WAIT_FOR")
ACTION_TYPES = (
    "TOGGLE_FEATURE",
    "UPDATE_FEATURE_VALUE",
    "TOGGLE_FEATURE_FOR_SEGMENT",
    "UPDATE_FEATURE_VALUE_FOR_SEGMENT",
    "PHASED_ROLLOUT",
)

# Run statuses. A run is "in flight" until it reaches one of the ended statuses.
RUN_ACTIVE_STATUSES = (
    "waiting", "applying", "awaiting_approval", "rolling_out", "watching", "paused", "halted"
)
RUN_ENDED_STATUSES = ("launched", "removed", "rolled_back")


class ReleasePipeline(Model):
    __table_args__ = (Index("ix_release_pipeline_project_live", "project_id", "deleted_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="draft")  # draft | published
    # Bumped by every saved draft edit: a stale edit (two editors) is refused, not merged.
    version: Mapped[int] = mapped_column(default=1)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)
    published_at: Mapped[datetime | None]
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    deleted_at: Mapped[datetime | None]

    project: Mapped[Project] = relationship()
    stages: Mapped[list["PipelineStage"]] = relationship(
        order_by="PipelineStage.position",
        back_populates="pipeline",
        cascade="all, delete-orphan",
    )

    @property
    def is_draft(self) -> bool:
        return self.status == "draft"


class PipelineStage(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    pipeline_id: Mapped[int] = mapped_column(
        ForeignKey("release_pipeline.id", ondelete="CASCADE"), index=True
    )
    # Order within the pipeline, 0-based. Kept dense by the service.
    position: Mapped[int]
    name: Mapped[str] = mapped_column(String(255), default="")
    # Nullable while a draft is being built; publish requires it.
    environment_id: Mapped[int | None] = mapped_column(ForeignKey("environment.id"))
    trigger_type: Mapped[str] = mapped_column(String(16), default="ON_ENTER")
    wait_seconds: Mapped[int | None]
    # With health checks: what an unhealthy check does (HOLD | ROLL_BACK; see models/health.py).
    on_unhealthy: Mapped[str] = mapped_column(String(16), default="HOLD", server_default="HOLD")

    pipeline: Mapped[ReleasePipeline] = relationship(back_populates="stages")
    environment: Mapped[Environment | None] = relationship()
    actions: Mapped[list["StageAction"]] = relationship(
        order_by="StageAction.position",
        back_populates="stage",
        cascade="all, delete-orphan",
    )
    checks: Mapped[list[StageHealthCheck]] = relationship(
        order_by="StageHealthCheck.position", cascade="all, delete-orphan",
    )


class StageAction(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    stage_id: Mapped[int] = mapped_column(
        ForeignKey("pipeline_stage.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int]
    action_type: Mapped[str] = mapped_column(String(40))
    enabled: Mapped[bool | None]
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    # Whether `value` is set at all (a value of null is a legitimate "clear the value").
    sets_value: Mapped[bool] = mapped_column(default=False)
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("segment.id"), index=True)
    rollout_initial: Mapped[int | None]
    rollout_step: Mapped[int | None]
    rollout_interval_seconds: Mapped[int | None]

    stage: Mapped[PipelineStage] = relationship(back_populates="actions")
    segment: Mapped[Segment | None] = relationship()


class PipelineRun(Model):
    """One flag's journey through one pipeline.

    Every transition is a compare-and-set on `version`.
    """

    __table_args__ = (
        # At most one run in flight per flag.
        Index(
            "uq_pipeline_run_active_feature",
            "feature_id",
            unique=True,
            sqlite_where=text("ended_at IS NULL"),
            postgresql_where=text("ended_at IS NULL"),
        ),
        # The sweeper's scan: runs due or with an expired lease.
        Index("ix_pipeline_run_due", "status", "due_at"),
        Index("ix_pipeline_run_pipeline_stage", "pipeline_id", "stage_position", "status"),
        # The board (issue 6): each column's first cards in order, read straight off the index,
        # and the Launched column / launches per day.
        Index("ix_pipeline_run_board", "pipeline_id", "stage_position", "entered_at", "id",
              sqlite_where=text("ended_at IS NULL"), postgresql_where=text("ended_at IS NULL")),
        Index("ix_pipeline_run_pipeline_status_ended", "pipeline_id", "status", "ended_at"),
        # The change token of open pages (issue 13): the project's runs in flight, read from
        # the index alone (count, sum of versions, how many can move). Not partial: SQLite only
        # reads a partial index alone when its condition's column is in it.
        Index("ix_pipeline_run_project_live", "project_id", "ended_at", "status", "version"),
        # Releasing a freeze or a stopped line: the runs it holds.
        Index("ix_pipeline_run_hold", "hold_kind", "hold_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    pipeline_id: Mapped[int] = mapped_column(ForeignKey("release_pipeline.id"))
    feature_id: Mapped[int] = mapped_column(ForeignKey("feature.id"))
    stage_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_stage.id"))
    stage_position: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(24), default="waiting")
    entered_at: Mapped[datetime] = mapped_column(default=now)  # entered the current stage
    due_at: Mapped[datetime | None]
    # While paused: the time left on the clock, restored on resume.
    paused_remaining_seconds: Mapped[float | None]
    paused_status: Mapped[str | None] = mapped_column(String(24))
    version: Mapped[int] = mapped_column(default=1)
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # Phased rollout in the current stage.
    rollout_percent: Mapped[int | None]
    rollout_segment_id: Mapped[int | None] = mapped_column(ForeignKey("segment.id"))
    # A guarded rollout stage: when its next step may go up (due_at is the next health check).
    next_step_at: Mapped[datetime | None]
    added_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    # Held by the release calendar (models/calendar.py): "window" (due_at is the next opening),
    # "freeze" or "stop" (due_at is NULL until released; hold_id names the freeze or stop). The
    # run's clock when it was held: `held_due_at` at `held_since`, so it resumes with the time
    # it had left.
    hold_kind: Mapped[str | None] = mapped_column(String(16))
    hold_id: Mapped[int | None]
    held_since: Mapped[datetime | None]
    held_due_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(24))
    # The pipeline's stages as they were when the flag entered (names, environments, triggers,
    # actions in words): its track and history are drawn from these, never from today's
    # pipeline. NULL for runs started before this was kept.
    stages: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)

    pipeline: Mapped[ReleasePipeline] = relationship()
    feature: Mapped[Feature] = relationship()
    stage: Mapped[PipelineStage | None] = relationship()

    @property
    def in_flight(self) -> bool:
        return self.ended_at is None


class StageExecution(Model):
    """What happened to a run in one stage: when it entered, applied, completed, and what it
    changed.

    `snapshot` holds the flag's states and segment overrides as they were before this stage
    changed them, so a rollback can restore them exactly.
    """

    __table_args__ = (UniqueConstraint("run_id", "stage_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_run.id", ondelete="CASCADE"))
    stage_id: Mapped[int] = mapped_column(ForeignKey("pipeline_stage.id"))
    position: Mapped[int]
    entered_at: Mapped[datetime] = mapped_column(default=now)
    applied_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    snapshot: Mapped[dict[str, Any]] = mapped_column(default=dict)
    change_request_id: Mapped[int | None] = mapped_column(ForeignKey("change_request.id"))

    stage: Mapped[PipelineStage] = relationship()
