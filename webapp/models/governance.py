"""People and accountability: users, memberships, API keys, audit log, change requests, outbox."""

from datetime import datetime
from typing import Any

from flask_login import UserMixin
from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.clock import now
from webapp.extensions import Model
from webapp.models.changes import ShownChange
from webapp.models.platform import Organisation, Project

ROLES = ("admin", "editor", "viewer")


class User(UserMixin, Model):
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_site_admin: Mapped[bool] = mapped_column(default=False)
    is_active_user: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    # Moves on sign-out, a password change or removal: every session cookie carries the epoch
    # it was signed in at (see get_id), and one of an earlier epoch no longer loads the user.
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.is_active_user

    def get_id(self) -> str:  # Flask-Login: what the session cookie holds
        return f"{self.id}:{self.session_epoch}"

    @property
    def display_name(self) -> str:
        return self.name or self.email


class Membership(Model):
    __table_args__ = (UniqueConstraint("user_id", "project_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(
        ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=now)

    user: Mapped[User] = relationship()
    project: Mapped[Project] = relationship()


class ApiKey(Model):
    """An organisation key (`Api-Key`) or a user token (`Token`). Only a hash is stored."""

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # organisation | user
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    prefix: Mapped[str] = mapped_column(String(16), index=True)  # shown in lists
    key_hash: Mapped[str] = mapped_column(String(128), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    organisation: Mapped[Organisation | None] = relationship()
    user: Mapped[User | None] = relationship()


class AuditEntry(Model):
    """Append-only record of a change. Pipeline entries carry an idempotency key (unique)."""

    __table_args__ = (
        Index("ix_audit_entry_project_id_desc", "project_id", "id"),
        Index("ix_audit_entry_project_event", "project_id", "event_type", "id"),
        Index("ix_audit_entry_project_pipeline", "project_id", "pipeline_id", "id"),
        Index("ix_audit_entry_project_feature", "project_id", "feature_id", "id"),
        Index("ix_audit_entry_project_created", "project_id", "created_at"),
        # The audit page's actor and environment filters, and its list of actors (issue 6).
        Index("ix_audit_entry_project_actor", "project_id", "actor_label", "id"),
        Index("ix_audit_entry_project_environment", "project_id", "environment_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisation.id"))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id"))
    environment_id: Mapped[int | None] = mapped_column(ForeignKey("environment.id"))
    # Who: a user, an API key, a release pipeline, or the system.
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    actor_api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_key.id"))
    actor_label: Mapped[str] = mapped_column(String(320))
    event_type: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[int | None]
    object_label: Mapped[str] = mapped_column(String(320), default="")
    message: Mapped[str] = mapped_column(Text)
    before: Mapped[Any] = mapped_column(JSON, nullable=True)
    after: Mapped[Any] = mapped_column(JSON, nullable=True)
    pipeline_id: Mapped[int | None] = mapped_column(ForeignKey("release_pipeline.id"))
    feature_id: Mapped[int | None] = mapped_column(ForeignKey("feature.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_run.id"))
    change_request_id: Mapped[int | None] = mapped_column(ForeignKey("change_request.id"))
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)


class ChangeRequest(Model):
    __table_args__ = (Index("ix_change_request_project_status", "project_id", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id"))
    environment_id: Mapped[int] = mapped_column(ForeignKey("environment.id"))
    feature_id: Mapped[int] = mapped_column(ForeignKey("feature.id"))
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str] = mapped_column(Text, default="")
    # open|committed|rejected|closed
    status: Mapped[str] = mapped_column(String(16), default="open")
    changes: Mapped[list[ShownChange]] = mapped_column(JSON, default=list)
    # Approvals are bound to this: a change of `changes` makes earlier approvals void.
    changes_hash: Mapped[str] = mapped_column(String(64))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_run.id"))
    stage_id: Mapped[int | None] = mapped_column(ForeignKey("pipeline_stage.id"))
    version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)
    committed_at: Mapped[datetime | None]
    committed_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])


class ChangeRequestReview(Model):
    __table_args__ = (UniqueConstraint("change_request_id", "user_id", "changes_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    change_request_id: Mapped[int] = mapped_column(
        ForeignKey("change_request.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"))
    decision: Mapped[str] = mapped_column(String(16))  # approved | rejected
    comment: Mapped[str] = mapped_column(Text, default="")
    changes_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=now)

    user: Mapped[User] = relationship()


class Notification(Model):
    """An in-app notification."""

    __table_args__ = (Index("ix_notification_user_unread", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("project.id"))
    kind: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text)
    link: Mapped[str] = mapped_column(String(500), default="")
    idempotency_key: Mapped[str | None] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    read_at: Mapped[datetime | None]


class OutboxMessage(Model):
    """Work to do after commit (emails, webhook events), written in the same transaction as
    the change."""

    __table_args__ = (Index("ix_outbox_message_pending", "sent_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))  # email | event
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=now)
    sent_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
