"""Blueprints by screen area, each registered here by name."""

from flask import Flask, Response

from webapp.views import (
    admin,
    alerts,
    api,
    audit,
    auth,
    board,
    change_requests,
    flags,
    health,
    notifications,
    pipelines,
    projects,
    runs,
    segments,
    webhooks,
)
from webapp.views.api import profile
from webapp.views.context import PROJECT_NAV

BLUEPRINTS = (auth.bp, health.bp, projects.bp, flags.bp, segments.bp, pipelines.bp, runs.bp,
              board.bp, change_requests.bp, audit.bp, notifications.bp, admin.bp, api.bp,
              profile.bp, webhooks.bp, alerts.bp)


def register_blueprints(app: Flask) -> None:
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)

    @app.after_request
    def _no_store(response: Response) -> Response:
        """Dashboard HTML is never kept by the browser: Back / Forward ask the server again, so
        an old builder (and its stale version number) never comes back from the history cache."""
        if response.mimetype == "text/html" and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def _navigation() -> dict[str, list[tuple[str, str]]]:
        return {"project_nav": PROJECT_NAV}
