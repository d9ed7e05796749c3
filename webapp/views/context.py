"""Helpers every dashboard view uses: the current actor and the project it acts on."""

from flask import g, request
from flask_login import current_user

from webapp.htmx import wants_fragment
from webapp.models import Project
from webapp.services.actors import Actor
from webapp.services.pages import live
from webapp.services.platform import access

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


def project_or_404(project_id: int, needs: str = "viewer") -> Project:
    """The project if the signed-in user holds `needs` there; 404 for non-members, 403 for low
    roles.

    Sets g.project and g.role for templates (navigation, which controls to show).
    """
    project, role = access.project_for(current_user, project_id, needs)
    g.project, g.role = project, role
    if request.method == "GET" and not wants_fragment():
        # The page's change token, read before the page's data: a change committed while the
        # page is drawn shows on its first check (views/notifications.py).
        g.live_token = live.project_token(project.id)
    return project


def actor() -> Actor:
    return Actor.for_user(current_user)


def can(needs: str) -> bool:
    return access.can(g.get("role"), needs)
