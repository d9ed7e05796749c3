"""Integrations out: a project's webhook receivers (signed JSON, or a Slack incoming webhook),
one delivery per (event, receiver), and every attempt made to deliver it."""

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from webapp.clock import now
from webapp.extensions import Model
from webapp.models.platform import Project

RECEIVER_KINDS = ("webhook", "slack")
DELIVERY_STATUSES = ("pending", "delivered", "failed", "gave_up")


class Webhook(Model):
    """A receiver of a project's events. `kind` "slack" is the project's Slack incoming webhook
    (readable text, a fixed set of events); "webhook" gets signed JSON for `events`."""

    __table_args__ = (Index("ix_webhook_project_enabled", "project_id", "enabled"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16), default="webhook")
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(255), default="")
    events: Mapped[list[Any]] = mapped_column(default=list)
    enabled: Mapped[bool] = mapped_column(default=True)
    # Why it was switched off by Railyard (a receiver failing for the whole retry span).
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)

    project: Mapped[Project] = relationship()


class WebhookDelivery(Model):
    """One event for one receiver: the exact body sent (so every retry signs the same bytes),
    its state, and when it is next due. `idempotency_key` is (event, receiver): never twice."""

    __table_args__ = (
        Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        Index("ix_webhook_delivery_webhook", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"))
    outbox_message_id: Mapped[int | None] = mapped_column(
        ForeignKey("outbox_message.id", ondelete="SET NULL"))
    idempotency_key: Mapped[str] = mapped_column(String(250), unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None]
    # Start of the current retry span (the first attempt, or the last "send again").
    first_attempt_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=now)


class WebhookAttempt(Model):
    """One try at a delivery. An attempt without `finished_at` was cut short (a killed worker);
    the next claim marks it interrupted."""

    __table_args__ = (Index("ix_webhook_attempt_delivery", "delivery_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_delivery.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(default=now)
    finished_at: Mapped[datetime | None]
    status_code: Mapped[int | None]
    outcome: Mapped[str] = mapped_column(String(16), default="sending")
    error: Mapped[str] = mapped_column(Text, default="")
    response_excerpt: Mapped[str] = mapped_column(Text, default="")


