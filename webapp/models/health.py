"""Guarded rollouts: health checks on stages, their state per run, project integrations, and the
alerts an Alertmanager-compatible sender reported."""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from webapp.clock import now
from webapp.extensions import Model

CHECK_KINDS = ("PROMETHEUS", "ALERT")
COMPARISONS = ("<", "<=", ">", ">=", "==", "!=")
ON_UNHEALTHY = ("HOLD", "ROLL_BACK")
# What a check's state shows: no answer yet, passing, failing (maybe not yet K in a row),
# or the source could not be asked.
CHECK_STATUSES = ("watching", "healthy", "failing", "unknown")


class StageHealthCheck(Model):
    """A health check on a stage: evaluated while a flag is in the stage (after its actions)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    stage_id: Mapped[int] = mapped_column(
        ForeignKey("pipeline_stage.id", ondelete="CASCADE"), index=True)
    position: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))  # PROMETHEUS | ALERT
    name: Mapped[str] = mapped_column(String(255), default="")
    # PROMETHEUS: a PromQL query ({{ flag }} and {{ environment }} filled in), healthy while
    # `value <comparison> threshold` holds.
    query: Mapped[str | None] = mapped_column(Text)
    comparison: Mapped[str | None] = mapped_column(String(2))
    threshold: Mapped[float | None]
    interval_seconds: Mapped[int] = mapped_column(default=30)
    # Unhealthy after this many failing evaluations in a row.
    failures_to_trip: Mapped[int] = mapped_column(default=1)
    # ALERT: label equalities an alert must carry (besides railyard_flag / railyard_pipeline).
    selector: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class HealthCheckState(Model):
    """One check's latest result for one run, written in the transaction of the decision it
    caused (the run's compare-and-set guards it)."""

    __table_args__ = (UniqueConstraint("run_id", "check_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("pipeline_run.id", ondelete="CASCADE"))
    check_id: Mapped[int] = mapped_column(ForeignKey("stage_health_check.id", ondelete="CASCADE"),
                                          index=True)
    status: Mapped[str] = mapped_column(String(16), default="watching")
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    last_value: Mapped[float | None]
    last_detail: Mapped[str | None] = mapped_column(Text)
    last_checked_at: Mapped[datetime | None]
    # Start of the current healthy streak (the bake counts from here).
    healthy_since: Mapped[datetime | None]
    evaluations: Mapped[int] = mapped_column(default=0)


class ProjectIntegration(Model):
    """Per-project integration settings (Prometheus, the alert receiver)."""

    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), primary_key=True)
    prometheus_url: Mapped[str] = mapped_column(String(500), default="")
    # Sent as the Authorization header to Prometheus when set (e.g. "Bearer …").
    prometheus_auth_header: Mapped[str] = mapped_column(String(1000), default="")
    # The alert receiver's secret: in its URL, or as a bearer token.
    alert_secret: Mapped[str | None] = mapped_column(String(64), unique=True)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)


class FiringAlert(Model):
    """An alert reported firing by the project's receiver; resolved alerts are deleted."""

    __table_args__ = (UniqueConstraint("project_id", "fingerprint"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(255), default="")
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime] = mapped_column(default=now)
    received_at: Mapped[datetime] = mapped_column(default=now)
