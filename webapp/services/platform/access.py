"""Who may see and do what in a project. Projects a user is not a member of answer 404."""

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Membership, Project, User
from webapp.services.errors import Forbidden, NotFound

ROLE_RANK = {"viewer": 1, "editor": 2, "admin": 3}


def role_in(user: User, project_id: int) -> str | None:
    """The user's role in the project; site admins act as project admins everywhere."""
    if user.is_site_admin:
        return "admin"
    return db.session.scalar(
        select(Membership.role).where(
            Membership.user_id == user.id, Membership.project_id == project_id
        )
    )


def project_for(user: User, project_id: int, needs: str = "viewer") -> tuple[Project, str]:
    """Load a project the user may act on with at least the `needs` role.

    Raises NotFound when the project does not exist or the user is not a member (so names
    do not leak), Forbidden when the member's role is too low.
    """
    project: Project | None
    role: str | None
    if user.is_site_admin:
        project, role = db.session.get(Project, project_id), "admin"
    else:  # the project and the member's role in one statement (every project page asks)
        found = db.session.execute(
            select(Project, Membership.role)
            .join(Membership, (Membership.project_id == Project.id)
                  & (Membership.user_id == user.id))
            .where(Project.id == project_id)).first()
        project, role = (found[0], found[1]) if found else (None, None)
    if project is None or role is None:
        raise NotFound("Project not found.")
    if ROLE_RANK[role] < ROLE_RANK[needs]:
        raise Forbidden(f"This needs the {needs} role in {project.name}.")
    return project, role


def can(role: str | None, needs: str) -> bool:
    return role is not None and ROLE_RANK[role] >= ROLE_RANK[needs]


def visible_projects(user: User) -> list[Project]:
    query = select(Project).order_by(Project.name)
    if not user.is_site_admin:
        query = query.join(Membership, Membership.project_id == Project.id).where(
            Membership.user_id == user.id
        )
    return list(db.session.scalars(query))
