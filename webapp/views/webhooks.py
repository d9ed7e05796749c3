"""Project settings → Webhooks and Slack (project admins): the receivers of the project's
events, and each receiver's delivery log with "send again"."""

from collections.abc import Callable
from typing import Any

from flask import Blueprint, redirect, request, url_for
from flask_login import login_required

from jobs import outbox
from webapp.htmx import render, wants_fragment
from webapp.models import Project, Webhook
from webapp.services.errors import Conflict, Invalid
from webapp.services.governance import webhooks
from webapp.services.governance.webhook_events import EVENT_LABELS, EVENTS, SLACK_EVENTS
from webapp.views.context import actor, project_or_404

bp = Blueprint("webhooks", __name__)

PAGE = "/projects/<int:project_id>/settings/webhooks"
ONE = f"{PAGE}/<int:webhook_id>"


@bp.get(PAGE)
@login_required
def index(project_id: int):
    project = project_or_404(project_id, "admin")
    return _render_page(project, "webhook_page")


@bp.post(PAGE)
@login_required
def create(project_id: int):
    project = project_or_404(project_id, "admin")
    form = request.form
    return _change(project, "webhook_list", "webhook-new", lambda: webhooks.create_webhook(
        project, actor(), url=form.get("url", ""), secret=form.get("secret", ""),
        events=form.getlist("events"), enabled=form.get("enabled") == "on"))


@bp.post(ONE)
@login_required
def update(project_id: int, webhook_id: int):
    project = project_or_404(project_id, "admin")
    hook = webhooks.get_webhook(project.id, webhook_id)
    form = request.form
    return _change(project, "webhook_list", f"webhook-{hook.id}", lambda: webhooks.update_webhook(
        hook, actor(), url=form.get("url", ""), secret=form.get("secret", ""),
        events=form.getlist("events"), enabled=form.get("enabled") == "on"))


@bp.post(f"{ONE}/delete")
@login_required
def delete(project_id: int, webhook_id: int):
    project = project_or_404(project_id, "admin")
    hook = webhooks.get_webhook(project.id, webhook_id)
    block = "slack_settings" if hook.kind == "slack" else "webhook_list"
    return _change(project, block, f"webhook-{hook.id}",
                   lambda: webhooks.delete_webhook(hook, actor()))


@bp.post(f"{PAGE}/slack")
@login_required
def set_slack(project_id: int):
    project = project_or_404(project_id, "admin")
    return _change(project, "slack_settings", "slack",
                   lambda: webhooks.set_slack(project, request.form.get("url", ""), actor()))


@bp.get(f"{ONE}/deliveries")
@login_required
def deliveries(project_id: int, webhook_id: int):
    project = project_or_404(project_id, "admin")
    hook = webhooks.get_webhook(project.id, webhook_id)
    return _render_log(project, hook, "delivery_page")


@bp.post(f"{ONE}/deliveries/<int:delivery_id>/send-again")
@login_required
def send_again(project_id: int, webhook_id: int, delivery_id: int):
    project = project_or_404(project_id, "admin")
    hook = webhooks.get_webhook(project.id, webhook_id)
    try:
        webhooks.send_again(hook, delivery_id, actor())
    except Conflict as error:
        return _render_log(project, hook, "delivery_list", 409, notice=error.message)
    outbox.ring()
    if not wants_fragment():
        return redirect(url_for("webhooks.deliveries", project_id=project.id,
                                webhook_id=hook.id), 303)
    return _render_log(project, hook, "delivery_list",
                       notice=f"Delivery #{delivery_id} will be sent again in a moment.")


def _change(project: Project, block: str, key: str, change: Callable[[], Any]):
    """Run one change; answer its section: 200 (303 without htmx), 422 with the errors beside
    the form `key`."""
    try:
        change()
    except Invalid as error:
        return _render_page(project, block, 422, errors={key: error.field_errors},
                            submitted={key: _submitted()})
    if not wants_fragment():
        return redirect(url_for("webhooks.index", project_id=project.id, _anchor=block), 303)
    return _render_page(project, block)


def _submitted() -> dict[str, Any]:
    return {**request.form.to_dict(), "events": request.form.getlist("events"),
            "enabled": request.form.get("enabled") == "on"}


def _render_page(project: Project, block: str, status: int = 200, **extra: Any):
    context: dict[str, Any] = {
        "project": project, "webhooks": webhooks.list_webhooks(project.id),
        "slack": webhooks.slack_of(project.id), "events": EVENTS, "labels": EVENT_LABELS,
        "slack_events": [EVENT_LABELS[e] for e in EVENTS if e in SLACK_EVENTS],
        "errors": {}, "submitted": {},
    }
    context.update(extra)
    return render("webhooks/index.html", block, status=status, **context)


def _render_log(project: Project, hook: Webhook, block: str, status: int = 200,
                notice: str = ""):
    page = request.args.get("page", "1")
    log = webhooks.delivery_log(hook, int(page) if page.isdigit() else 1)
    return render("webhooks/deliveries.html", block, status=status, project=project, hook=hook,
                  log=log, notice=notice)
