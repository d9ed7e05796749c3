"""Projects, their environments and members."""

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import (
    Environment,
    Feature,
    FeatureState,
    Membership,
    Organisation,
    Project,
    User,
)
from webapp.services.actors import Actor
from webapp.services.errors import Invalid
from webapp.services.governance import audit
from webapp.services.platform import keys

DEFAULT_ENVIRONMENTS = ("Development", "Staging", "Production")


MAX_NAME = 255  # every name column's length


def check_name(name: str | None, field: str = "name") -> str:
    """The name, trimmed; Invalid when empty or longer than MAX_NAME."""
    name = (name or "").strip()
    if not name:
        raise Invalid("A name is required.", {field: ["A name is required."]})
    if len(name) > MAX_NAME:
        raise Invalid("Name too long.", {field: [f"At most {MAX_NAME} characters."]})
    return name


def default_organisation() -> Organisation:
    org = db.session.scalar(select(Organisation).order_by(Organisation.id))
    if org is None:
        org = Organisation(name="Railyard")
        db.session.add(org)
        db.session.flush()
    return org


def create_project(
    name: str, actor: Actor, environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS,
    organisation: Organisation | None = None,
) -> Project:
    """Create a project with its environments. Site admins only (checked by the caller). Audited."""
    name = check_name(name)
    organisation = organisation or default_organisation()
    project = Project(name=name, organisation_id=organisation.id)
    db.session.add(project)
    db.session.flush()
    audit.record(actor, "PROJECT_CREATED", f"Project {name} created", project_id=project.id,
                 object_type="project", object_id=project.id, object_label=name,
                 organisation_id=organisation.id)
    for position, env_name in enumerate(environments):
        add_environment(project, env_name, actor, position=position, commit=False)
    db.session.commit()
    return project


def add_environment(
    project: Project, name: str, actor: Actor, *, position: int | None = None, commit: bool = True
) -> Environment:
    """Add an environment with fresh keys; every feature gets its default state there. Audited."""
    name = check_name(name)
    exists = db.session.scalar(
        select(Environment.id).where(Environment.project_id == project.id, Environment.name == name)
    )
    if exists:
        raise Invalid("Name taken.",
                      {"name": ["This project already has an environment with this name."]})
    if position is None:
        position = (db.session.scalar(
            select(db.func.max(Environment.position)).where(Environment.project_id == project.id)
        ) or 0) + 1
    env = Environment(
        project_id=project.id, name=name, position=position,
        client_key=keys.environment_client_key(), server_key=keys.environment_server_key(),
    )
    db.session.add(env)
    db.session.flush()
    for feature in db.session.scalars(select(Feature).where(Feature.project_id == project.id)):
        db.session.add(FeatureState(feature_id=feature.id, environment_id=env.id,
                                    enabled=feature.default_enabled, value=feature.default_value))
    audit.record(actor, "ENVIRONMENT_CREATED", f"Environment {name} created",
                 project_id=project.id, environment_id=env.id, object_type="environment",
                 object_id=env.id, object_label=name)
    if commit:
        db.session.commit()
    return env


def add_member(
    project: Project, user: User, role: str, actor: Actor, *, commit: bool = True
) -> Membership:
    """Add a member with a role, or change the role of an existing member. Audited."""
    if role not in ("admin", "editor", "viewer"):
        raise Invalid("Unknown role.", {"role": ["Choose admin, editor or viewer."]})
    membership = db.session.scalar(
        select(Membership).where(Membership.project_id == project.id, Membership.user_id == user.id)
    )
    before = membership.role if membership else None
    if membership is None:
        membership = Membership(project_id=project.id, user_id=user.id, role=role)
        db.session.add(membership)
    membership.role = role
    db.session.flush()
    audit.record(actor, "MEMBER_ROLE_SET", f"{user.email} is now {role} in {project.name}",
                 project_id=project.id, object_type="membership", object_id=membership.id,
                 object_label=user.email, before={"role": before}, after={"role": role})
    if commit:
        db.session.commit()
    return membership


def environments_of(project_id: int) -> list[Environment]:
    return list(db.session.scalars(
        select(Environment).where(Environment.project_id == project_id)
        .order_by(Environment.position, Environment.id)
    ))
