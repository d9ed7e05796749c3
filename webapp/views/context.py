"""Helpers every dashboard view uses: the current actor and the project it acts on."""

from flask import g
from flask_login import current_user

from webapp.models import Project
from webapp.services import access
from webapp.services.actors import Actor


def project_or_404(project_id: int, needs: str = "viewer") -> Project:
    """The project if the signed-in user holds `needs` there; 404 for non-members, 403 for low
    roles.

    Sets g.project and g.role for templates (navigation, which controls to show).
    """
    project, role = access.project_for(current_user, project_id, needs)
    g.project, g.role = project, role
    return project


def actor() -> Actor:
    return Actor.for_user(current_user)


def can(needs: str) -> bool:
    return access.can(g.get("role"), needs)
