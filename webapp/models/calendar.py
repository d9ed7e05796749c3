"""The release calendar: deployment windows per environment, freezes, and the stop-the-line switch.

Times are UTC instants except a window's opening hours, which are wall-clock minutes in its
environment's IANA time zone (services/runs/calendar.py turns them into instants with zoneinfo).
"""

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.clock import now
from webapp.extensions import Model
from webapp.models.platform import Environment

HOLD_KINDS = ("window", "freeze", "stop")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class EnvironmentSchedule(Model):
    """An environment's deployment schedule: its time zone. With no windows the environment is
    always open; with windows, only inside them."""

    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environment.id", ondelete="CASCADE"), primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))

    environment: Mapped[Environment] = relationship()
    windows: Mapped[list["DeploymentWindow"]] = relationship(
        order_by="DeploymentWindow.id", cascade="all, delete-orphan")


class DeploymentWindow(Model):
    """Weekly opening hours: on `weekday` (0 = Monday) from `opens_minute` to `closes_minute`
    after local midnight (0..1440, opens < closes; a window never crosses midnight: two windows
    do)."""

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environment_schedule.environment_id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int]
    opens_minute: Mapped[int]
    closes_minute: Mapped[int]


class Freeze(Model):
    """A dated period in which no stage applies into the frozen environments: one project's
    (project_id set) or the whole organisation's (project_id NULL). `all_environments`, or the
    environments listed in FreezeEnvironment."""

    __table_args__ = (
        Index("ix_freeze_organisation_period", "organisation_id", "ends_at", "starts_at"),
        Index("ix_freeze_project_period", "project_id", "ends_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text, default="")
    all_environments: Mapped[bool] = mapped_column(default=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    created_by_label: Mapped[str] = mapped_column(String(320), default="")
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now)
    lifted_at: Mapped[datetime | None]
    lifted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    lifted_by_label: Mapped[str | None] = mapped_column(String(320))
    # Set once, by a compare-and-set, when the freeze's holds were applied to the flags in flight
    # (its start) and released (its end or lift): announced and audited exactly once.
    activated_at: Mapped[datetime | None]
    released_at: Mapped[datetime | None]
    # Bumped by every change; a stale edit is refused.
    version: Mapped[int] = mapped_column(default=1)

    environments: Mapped[list["FreezeEnvironment"]] = relationship(cascade="all, delete-orphan")

    @property
    def environment_ids(self) -> list[int]:
        return sorted(e.environment_id for e in self.environments)


class FreezeEnvironment(Model):
    freeze_id: Mapped[int] = mapped_column(ForeignKey("freeze.id", ondelete="CASCADE"),
                                           primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environment.id", ondelete="CASCADE"), primary_key=True, index=True)


class LineStop(Model):
    """The stop-the-line switch, pulled for a project (project_id set) or the whole organisation:
    every transition holds until it is lifted. At most one unlifted stop per scope."""

    __table_args__ = (
        Index("uq_line_stop_active_scope", "scope", unique=True,
              sqlite_where=text("lifted_at IS NULL"), postgresql_where=text("lifted_at IS NULL")),
        Index("ix_line_stop_organisation", "organisation_id", "lifted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    # "project:<id>" or "organisation:<id>": the unique index keeps one active stop per scope.
    scope: Mapped[str] = mapped_column(String(40))
    reason: Mapped[str] = mapped_column(Text, default="")
    stopped_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    stopped_by_label: Mapped[str] = mapped_column(String(320), default="")
    stopped_at: Mapped[datetime] = mapped_column(default=now)
    lifted_at: Mapped[datetime | None]
    lifted_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    lifted_by_label: Mapped[str | None] = mapped_column(String(320))
