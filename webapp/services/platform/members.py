"""A project's members and their roles. A project always keeps at least one admin."""

from collections.abc import Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from webapp.extensions import db
from webapp.models import ROLES, Membership, Project, User
from webapp.services.actors import Actor
from webapp.services.errors import Conflict, Invalid, NotFound
from webapp.services.governance import audit
from webapp.services.platform import projects, users


def list_members(project_id: int) -> list[Membership]:
    """The project's memberships with their users, by email."""
    return list(db.session.scalars(
        select(Membership).where(Membership.project_id == project_id)
        .options(selectinload(Membership.user))
        .join(User, User.id == Membership.user_id).order_by(func.lower(User.email))))


def get_membership(project_id: int, membership_id: int) -> Membership:
    membership = db.session.get(Membership, membership_id)
    if membership is None or membership.project_id != project_id:
        raise NotFound("Member not found.")
    return membership


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise Invalid("Unknown role.", {"role": ["Choose admin, editor or viewer."]})
    return role


def add_member_by_email(project: Project, email: str, role: str, actor: Actor) -> Membership:
    """Add an existing user to the project with a role.

    Refuses an unknown email, a user who is already a member, an unknown role (Invalid).
    Audited as MEMBER_ROLE_SET (before: no role).
    """
    errors: dict[str, list[str]] = {}
    user = users.find_by_email(email or "") if (email or "").strip() else None
    if not (email or "").strip():
        errors["email"] = ["Enter the email of an existing user."]
    elif user is None:
        errors["email"] = ["No user has this email. A site admin creates accounts."]
    elif db.session.scalar(select(Membership.id).where(
            Membership.project_id == project.id, Membership.user_id == user.id)):
        errors["email"] = [f"{user.email} is already a member; change their role below."]
    if role not in ROLES:
        errors["role"] = ["Choose admin, editor or viewer."]
    if errors:
        raise Invalid("Check the member.", errors)
    assert user is not None
    return projects.add_member(project, user, role, actor)


def create_user_in_projects(email: str, password: str, *, name: str = "",
                            site_admin: bool = False, roles: Mapping[int, str],
                            actor: Actor) -> list[tuple[Project, str]]:
    """Create a user and add them to projects, each with a role, in one unit of work (the site
    admin's "New user" form): nothing is saved when anything is refused.

    Refuses what `users.create_user` refuses, a project that does not exist and a role other
    than admin, editor or viewer (Invalid, under "projects"). Audited as USER_CREATED and one
    MEMBER_ROLE_SET per project. Returns the (project, role) pairs added, by project name.
    """
    chosen = {project_id: role for project_id, role in roles.items() if role}
    found = {project.id: project for project in db.session.scalars(
        select(Project).where(Project.id.in_(list(chosen))))} if chosen else {}
    if set(found) != set(chosen) or any(role not in ROLES for role in chosen.values()):
        raise Invalid("Check the projects.", {"projects": [
            "Choose admin, editor or viewer for projects that exist."]})
    user = users.create_user(email, password, name=name, site_admin=site_admin, actor=actor,
                             commit=False)
    added = sorted(((found[i], role) for i, role in chosen.items()),
                   key=lambda pair: pair[0].name.lower())
    for project, role in added:
        projects.add_member(project, user, role, actor, commit=False)
    db.session.commit()
    return added


def _admins_left(project_id: int, without: int) -> int:
    return db.session.scalar(select(func.count(Membership.id)).where(
        Membership.project_id == project_id, Membership.role == "admin",
        Membership.id != without)) or 0


def change_role(membership: Membership, role: str, actor: Actor) -> Membership:
    """Change a member's role. Refuses an unknown role (Invalid) and taking the admin role from
    the project's last admin (Conflict). Audited as MEMBER_ROLE_SET with before/after."""
    _check_role(role)
    if membership.role == role:
        return membership
    if membership.role == "admin" and _admins_left(membership.project_id, membership.id) == 0:
        raise Conflict(f"{membership.user.email} is the project's only admin: make someone else "
                       "admin first.")
    return projects.add_member(membership.project, membership.user, role, actor)


def remove_member(membership: Membership, actor: Actor) -> None:
    """Take a member out of the project. Refuses removing the last admin (Conflict).
    Audited as MEMBER_REMOVED (before: the role)."""
    if membership.role == "admin" and _admins_left(membership.project_id, membership.id) == 0:
        raise Conflict(f"{membership.user.email} is the project's only admin: make someone else "
                       "admin first.")
    email, role, project = membership.user.email, membership.role, membership.project
    audit.record(actor, "MEMBER_REMOVED", f"{email} removed from {project.name}",
                 project_id=project.id, object_type="membership", object_id=membership.id,
                 object_label=email, before={"role": role}, after=None)
    db.session.delete(membership)
    db.session.commit()
