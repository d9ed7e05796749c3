"""Who an admin API request acts as, and what it may reach.

`Authorization: Api-Key <key>` is an organisation key: it acts as an admin on every project of
its organisation and nowhere else. `Authorization: Token <token>` is a user's personal token:
it acts with that user's project roles. Anything out of reach answers 404, as for people.
"""

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from webapp import database
from webapp.clock import now
from webapp.extensions import db
from webapp.models import ApiKey, Environment, Project, User
from webapp.services.actors import Actor
from webapp.services.errors import DomainError, Forbidden, NotFound
from webapp.services.platform import access, api_keys, users

# last_used_at is written at most this often per key, so reads do not turn into writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)
SCHEMES = {"api-key": "organisation", "token": "user"}


class Unauthenticated(DomainError):
    status_code = 401


class BadCredentials(DomainError):
    status_code = 400  # Flagsmith's login answers 400 for wrong credentials, as DRF does


LOGIN_TOKEN_NAME = "API login"


@dataclass(frozen=True)
class Principal:
    key_id: int
    kind: str  # organisation | user
    actor: Actor
    organisation_id: int | None = None
    user: User | None = None

    @property
    def token_user(self) -> User:
        """A user token's user: `authenticate` refuses a user token without an active one."""
        assert self.user is not None
        return self.user


def authenticate(authorization: str | None) -> Principal:
    """The principal of an `Authorization` header value; refuses a missing, malformed,
    unknown or revoked key (401), and a token of a deactivated user. Notes when it was used."""
    scheme, _, secret = (authorization or "").strip().partition(" ")
    kind = SCHEMES.get(scheme.lower())
    if not authorization:
        raise Unauthenticated("Authentication credentials were not provided: send "
                              "`Authorization: Api-Key <key>` or `Authorization: Token <token>`.")
    if kind is None or not secret.strip():
        raise Unauthenticated(
            "Use `Authorization: Api-Key <key>` or `Authorization: Token <token>`.")
    row = api_keys.find_active(secret.strip())
    if row is None or row.kind != kind:
        raise Unauthenticated("Invalid or revoked key.")
    if kind == "user" and (row.user is None or not row.user.is_active):
        raise Unauthenticated("This token's user is deactivated.")
    principal = Principal(key_id=row.id, kind=kind, actor=Actor.for_api_key(row),
                          organisation_id=row.organisation_id, user=row.user)
    _note_use(row)
    return principal


def _note_use(row: ApiKey) -> None:
    moment = now()
    last = row.last_used_at
    if last is not None and last.tzinfo is None:
        last = last.replace(tzinfo=moment.tzinfo)
    if last is not None and moment - last < LAST_USED_RESOLUTION:
        return
    try:
        db.session.execute(update(ApiKey).where(ApiKey.id == row.id).values(last_used_at=moment))
        database.commit_repeatable()
    except OperationalError:
        # Best effort: a busy database (SQLite's write lock) must not fail the read itself.
        db.session.rollback()


def role_in(principal: Principal, project: Project) -> str | None:
    if principal.kind == "organisation":
        return "admin" if project.organisation_id == principal.organisation_id else None
    return access.role_in(principal.token_user, project.id)


def project_for(principal: Principal, project_id: int, needs: str = "viewer") -> Project:
    """The project if the principal reaches it with at least `needs`; 404 when it is out of
    reach (another organisation, not a member), 403 when the role is too low."""
    project = db.session.get(Project, project_id) if 0 < project_id < 2**31 else None
    role = role_in(principal, project) if project else None
    if project is None or role is None:
        raise NotFound("Not found.")
    if not access.can(role, needs):
        raise Forbidden(f"This needs the {needs} role in this project.")
    return project


def visible_projects(principal: Principal) -> list[Project]:
    if principal.kind == "organisation":
        return list(db.session.scalars(
            select(Project).where(Project.organisation_id == principal.organisation_id)
            .order_by(Project.id)
        ))
    return sorted(access.visible_projects(principal.token_user), key=lambda p: p.id)


def environment_for(principal: Principal, api_key: str, needs: str = "viewer") -> Environment:
    """An environment by its client key (Flagsmith's admin API names environments so)."""
    env = db.session.scalar(select(Environment).where(Environment.client_key == api_key))
    if env is None:
        raise NotFound("Not found.")
    project_for(principal, env.project_id, needs)
    return env


def can_create_projects(principal: Principal) -> bool:
    return principal.kind == "organisation" or bool(principal.user and principal.user.is_site_admin)


def tokens_of(user: User) -> list[ApiKey]:
    """The user's personal tokens, newest first (revoked ones included)."""
    return list(db.session.scalars(
        select(ApiKey).where(ApiKey.user_id == user.id, ApiKey.kind == "user")
        .order_by(ApiKey.id.desc())
    ))


def revoke_token(user: User, token_id: int, actor: Actor) -> ApiKey:
    """Revoke one of the user's own tokens (404 for anyone else's). Audited."""
    row = db.session.get(ApiKey, token_id)
    if row is None or row.user_id != user.id or row.kind != "user":
        raise NotFound("Token not found.")
    if row.revoked_at is None:
        api_keys.revoke(row, actor)
    return row


def login(email: str, password: str) -> str:
    """A new personal token for the person with this email and password (Flagsmith's
    `POST /auth/login/`), so that scripts can act as that person; it is listed and revocable
    on their profile page like any token. Checks the password with `users.authenticate`, the
    sign-in form's own check (and so its throttling). Refuses wrong credentials or a
    deactivated user alike (BadCredentials). Audited as API_KEY_CREATED."""
    user = users.authenticate(email, password)
    if user is None:
        raise BadCredentials("Unable to log in with provided credentials.",
                             {"non_field_errors": ["Unable to log in with provided credentials."]})
    _row, secret = api_keys.create_user_token(user, LOGIN_TOKEN_NAME, Actor.for_user(user))
    return secret
