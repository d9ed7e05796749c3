"""The flag platform: organisations, projects, environments, features, states, segments,
identities.
"""

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.clock import now
from webapp.extensions import Model

VALUE_TYPES = ("none", "string", "integer", "boolean")


class Organisation(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=now)


class Project(Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisation.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=now)

    organisation: Mapped[Organisation] = relationship()


class Environment(Model):
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    client_key: Mapped[str] = mapped_column(String(64), unique=True)
    server_key: Mapped[str] = mapped_column(String(64), unique=True)
    # 0 means changes apply at once; N >= 1 means a change request needs N approvals.
    minimum_change_request_approvals: Mapped[int] = mapped_column(default=0)
    # Bumped in the same transaction as any change to this environment's flags or segments;
    # the SDK API caches its documents per (environment, revision).
    revision: Mapped[int] = mapped_column(default=1)
    position: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=now)

    project: Mapped[Project] = relationship()


class ServerKey(Model):
    """A named server-side key of an environment, made through the admin API (Flagsmith's
    `environments/<api_key>/api-keys/`) for deployment scripts; stored hashed, shown once. The
    environment's own `server_key` (settings page) works beside these."""

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environment.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16))  # "ser." and a few characters, to tell apart
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=now)


class FlagEvaluationCount(Model):
    """How often SDKs evaluated a flag in an environment on a UTC day (their analytics posts,
    buffered in Redis and added here by the sweeper)."""

    __table_args__ = (UniqueConstraint("feature_id", "environment_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feature_id: Mapped[int] = mapped_column(ForeignKey("feature.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environment.id", ondelete="CASCADE"), index=True
    )
    day: Mapped[date]
    count: Mapped[int] = mapped_column(BigInteger, default=0)


class Feature(Model):
    __table_args__ = (UniqueConstraint("project_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    # "none" is an on/off flag; otherwise the flag also carries a value of this type.
    value_type: Mapped[str] = mapped_column(String(16), default="none")
    default_enabled: Mapped[bool] = mapped_column(default=False)
    default_value: Mapped[Any] = mapped_column(JSON, nullable=True)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    created_at: Mapped[datetime] = mapped_column(default=now)

    project: Mapped[Project] = relationship()


class FeatureState(Model):
    """A feature's environment default: enabled and value."""

    __table_args__ = (UniqueConstraint("feature_id", "environment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feature_id: Mapped[int] = mapped_column(ForeignKey("feature.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environment.id", ondelete="CASCADE"), index=True
    )
    enabled: Mapped[bool] = mapped_column(default=False)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)

    feature: Mapped[Feature] = relationship()
    environment: Mapped[Environment] = relationship()


class Segment(Model):
    """A named set of rules over identity traits.

    `rules` is the whole rule tree as one JSON document, in the flag engine's shape:
    [{"type": "ALL"|"ANY"|"NONE", "conditions": [{"property", "operator", "value"}],
      "rules": [...nested...]}]. It is always read and written whole, so a document column
    keeps the rule builder and evaluation simple. System segments (phased rollouts) are hidden.
    """

    __table_args__ = (
        Index("ix_segment_project_visible", "project_id", "is_system"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"))
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    rules: Mapped[list[Any]] = mapped_column(default=list)
    is_system: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)

    project: Mapped[Project] = relationship()


class SegmentOverride(Model):
    """A feature's enabled/value for members of a segment in one environment (lower priority
    wins).
    """

    __table_args__ = (UniqueConstraint("feature_id", "environment_id", "segment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feature_id: Mapped[int] = mapped_column(ForeignKey("feature.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environment.id", ondelete="CASCADE"), index=True
    )
    segment_id: Mapped[int] = mapped_column(ForeignKey("segment.id"), index=True)
    priority: Mapped[int] = mapped_column(default=0)
    enabled: Mapped[bool] = mapped_column(default=False)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)

    feature: Mapped[Feature] = relationship()
    environment: Mapped[Environment] = relationship()
    segment: Mapped[Segment] = relationship()


class Identity(Model):
    __table_args__ = (UniqueConstraint("environment_id", "identifier"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id", ondelete="CASCADE"))
    identifier: Mapped[str] = mapped_column(String(2000))
    # {trait_key: trait_value}
    traits: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=now)
