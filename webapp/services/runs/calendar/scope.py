"""Whose calendar it is and who may change it: an environment's project and organisation,
the admins who may change their calendar, and the members who hear of a change.
"""

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Environment, Membership, Project, User
from webapp.services.actors import Actor
from webapp.services.errors import Forbidden, NotFound
from webapp.services.governance import notifications
from webapp.services.platform import access
from webapp.services.runs.calendar.records import Memo


def environment_of(environment_id: int, memo: Memo) -> tuple[int, int, str]:
    """(project id, organisation id, name) of an environment."""
    if environment_id not in memo.environments:
        row = db.session.execute(
            select(Environment.project_id, Project.organisation_id, Environment.name)
            .join(Project, Project.id == Environment.project_id)
            .where(Environment.id == environment_id)).first()
        if row is None:
            raise NotFound("Environment not found.")
        memo.environments[environment_id] = (row[0], row[1], row[2])
    return memo.environments[environment_id]


def project_or_404(project_id: int) -> Project:
    project = db.session.get(Project, project_id) if 0 < project_id < 2**31 else None
    if project is None:
        raise NotFound("Project not found.")
    return project


def scope_text(project_id: int | None) -> str:
    if project_id is None:
        return "whole organisation"
    project = db.session.get(Project, project_id)
    return f"project {project.name}" if project else f"project #{project_id}"


def _actor_user(actor: Actor) -> User | None:
    return db.session.get(User, actor.user_id) if actor.user_id is not None else None


def may_administer(actor: Actor, organisation_id: int, project_id: int | None) -> bool:
    """Admins only: a project's admins for the project; site admins (and the organisation's
    API key) for the organisation, and for every project of it."""
    if actor.kind == "system":
        return True
    if actor.kind == "api_key" and actor.user_id is None:
        return actor.organisation_id == organisation_id
    user = _actor_user(actor)
    if user is None:
        return False
    if user.is_site_admin:
        return True
    if project_id is None:
        return False
    return access.role_in(user, project_id) == "admin"


def require_admin(actor: Actor, organisation_id: int, project_id: int | None) -> None:
    if not may_administer(actor, organisation_id, project_id):
        if project_id is None:
            raise Forbidden("Only site admins change the organisation's release calendar.")
        raise Forbidden("Only admins change the release calendar.")


def notify_scope(organisation_id: int, project_id: int | None, kind: str, message: str, *,
                 key: str) -> int:
    """An in-app notification for every member of the project (of every project of the
    organisation) and every site admin; once per `key`. In the caller's transaction."""
    query = select(Membership.user_id, Membership.project_id)
    if project_id is not None:
        query = query.where(Membership.project_id == project_id)
    else:
        query = query.join(Project, Project.id == Membership.project_id).where(
            Project.organisation_id == organisation_id)
    recipients: dict[int, int | None] = {}
    for user_id, member_project in db.session.execute(query):
        recipients.setdefault(user_id, project_id if project_id is not None else member_project)
    for user_id in db.session.scalars(select(User.id).where(User.is_site_admin)):
        recipients.setdefault(user_id, project_id)
    link = f"/projects/{project_id}/board" if project_id is not None else "/"
    return notifications.announce(
        [(uid, pid) for uid, pid in sorted(recipients.items())], kind, message, link=link,
        key=f"calendar:{key}")
