"""Helpers every dashboard view uses: the current actor and the project it acts on."""

from flask import g, request
from flask_login import current_user

from webapp.htmx import wants_fragment
from webapp.models import Project
from webapp.services.actors import Actor
from webapp.services.errors import Forbidden
from webapp.services.pages import live
from webapp.services.platform import access

# (label, endpoint) of the project's navigation, in order; each takes `project_id`.
PROJECT_NAV = [
    ("Flags", "flags.index"),
    ("Segments", "segments.index"),
    ("Pipelines", "pipelines.index"),
    ("Boards", "board.overview"),
    ("Change requests", "change_requests.index"),
    ("Calendar", "calendar.project"),
    ("Audit log", "audit.index"),
    ("Settings", "projects.settings"),
]
# Areas a lower role would only be refused: the menu leaves them out (the rest: every member).
NAV_NEEDS = {"projects.settings": "admin"}


def project_nav() -> list[tuple[str, str]]:
    """The navigation entries the signed-in member's role (g.role) may open."""
    role = g.get("role")
    return [(label, endpoint) for label, endpoint in PROJECT_NAV
            if access.can(role, NAV_NEEDS.get(endpoint, "viewer"))]


def project_or_404(project_id: int, needs: str = "viewer") -> Project:
    """The project if the signed-in user holds `needs` there; 404 for non-members, 403 for low
    roles.

    Sets g.project and g.role for templates (navigation, which controls to show).
    """
    try:
        project, role = access.project_for(current_user, project_id, needs)
    except Forbidden:
        # A member whose role is too low: the refusal page keeps the project's navigation.
        g.project, g.role = access.project_for(current_user, project_id)
        g.needed_role = needs
        raise
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
