"""Blueprints by screen area. Project navigation shows the areas whose endpoints exist and
that the signed-in member's role may open."""

from flask import Flask, g

from webapp.services import access

# (label, endpoint) of the project's navigation, in order; each takes `project_id`.
PROJECT_NAV = [
    ("Flags", "flags.index"),
    ("Segments", "segments.index"),
    ("Pipelines", "pipelines.index"),
    ("Boards", "board.overview"),
    ("Change requests", "change_requests.index"),
    ("Audit log", "audit.index"),
    ("Settings", "projects.settings"),
]
# Areas a lower role would only be refused (the rest are open to every member).
NAV_NEEDS = {"projects.settings": "admin"}


def register_blueprints(app: Flask) -> None:
    from webapp.views import auth, health, projects

    for module in (auth, health, projects):
        app.register_blueprint(module.bp)
    for module in _optional_modules():
        app.register_blueprint(module.bp)

    @app.after_request
    def _no_store(response):
        """Dashboard HTML is never kept by the browser: Back / Forward ask the server again, so
        an old builder (and its stale version number) never comes back from the history cache."""
        if response.mimetype == "text/html" and "Cache-Control" not in response.headers:
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.context_processor
    def _navigation():
        role = g.get("role")
        return {"project_nav": [(label, ep) for label, ep in PROJECT_NAV
                                if ep in app.view_functions
                                and access.can(role, NAV_NEEDS.get(ep, "viewer"))]}


def _optional_modules():
    """Screen areas added issue by issue; each module exposes `bp`."""
    import importlib

    for name in ("flags", "segments", "pipelines", "runs", "board", "change_requests", "audit",
                 "notifications", "admin", "api", "webhooks", "alerts"):
        try:
            yield importlib.import_module(f"webapp.views.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"webapp.views.{name}":
                raise
