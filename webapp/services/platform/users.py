"""Accounts: creating users, signing in, loading the session's user."""

import functools
import secrets

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.extensions import db
from webapp.models import User
from webapp.orm import fit
from webapp.services.actors import SYSTEM, Actor
from webapp.services.errors import Conflict, Invalid
from webapp.services.governance import audit

MIN_PASSWORD = 8


def load_user(session_id: str) -> User | None:
    """The signed-in user of a session cookie ("<id>:<epoch>", `User.get_id`), or None when the
    cookie is of an earlier session epoch (signed out, password changed, removed) or the user
    is deactivated."""
    user_id, _, epoch = (session_id or "").partition(":")
    if not (user_id.isascii() and user_id.isdigit() and epoch.isascii() and epoch.isdigit()):
        return None
    user = db.session.get(User, int(user_id)) if int(user_id) < 2**31 else None
    if user is None or not user.is_active or user.session_epoch != int(epoch):
        return None
    return user


def end_sessions(user: User) -> None:
    """End every session the user has (all browsers), in the caller's transaction."""
    user.session_epoch = (user.session_epoch or 0) + 1


def sign_out(user: User) -> None:
    """Sign the user out everywhere: every session cookie issued so far stops working."""
    end_sessions(user)
    db.session.commit()


def change_password(user: User, password: str, actor: Actor) -> None:
    """Set a new password and end the user's sessions. Refuses a password under 8 characters.
    Audited as USER_PASSWORD_CHANGED (no secret in the entry)."""
    if len(password or "") < MIN_PASSWORD:
        raise Invalid("Password too short.", {"password": [f"At least {MIN_PASSWORD} characters."]})
    user.password_hash = generate_password_hash(password)
    end_sessions(user)
    audit.record(actor, "USER_PASSWORD_CHANGED", f"Password of {user.email} changed",
                 project_id=None, object_type="user", object_id=user.id, object_label=user.email)
    db.session.commit()


def remove_user(user: User, actor: Actor) -> None:
    """Remove (deactivate) a user: they can no longer sign in, their sessions end and their API
    tokens stop working. Refuses removing yourself (Conflict). Audited as USER_REMOVED."""
    if actor.user_id == user.id:
        raise Conflict("You cannot remove yourself.")
    user.is_active_user = False
    end_sessions(user)
    audit.record(actor, "USER_REMOVED", f"User {user.email} removed", project_id=None,
                 object_type="user", object_id=user.id, object_label=user.email,
                 before={"active": True}, after={"active": False})
    db.session.commit()


def find_by_email(email: str) -> User | None:
    return db.session.scalar(select(User).where(func.lower(User.email) == email.strip().lower()))


def create_user(
    email: str, password: str, *, name: str = "", site_admin: bool = False, actor: Actor = SYSTEM
) -> User:
    """Create a user. Refuses a duplicate email or a password under 8 characters. Audited."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise Invalid("Invalid email.", {"email": ["Enter a valid email address."]})
    if find_by_email(email):
        raise Invalid("Email taken.", {"email": ["A user with this email already exists."]})
    if len(password) < MIN_PASSWORD:
        raise Invalid("Password too short.", {"password": [f"At least {MIN_PASSWORD} characters."]})
    user = User(
        email=email, name=fit(User.name, name.strip()), is_site_admin=site_admin,
        password_hash=generate_password_hash(password),
    )
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "USER_CREATED", f"User {email} created", project_id=None,
                 object_type="user", object_id=user.id, object_label=email,
                 after={"email": email, "site_admin": site_admin})
    db.session.commit()
    return user


@functools.cache
def _dummy_hash() -> str:
    """A password hash of nothing anyone can type, made with the same method and cost as real
    ones: checking against it makes an unknown email cost the time of a wrong password."""
    return generate_password_hash(secrets.token_hex(32))


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, or None. Always computes one password
    hash, so the answer's timing does not tell which accounts exist."""
    user = find_by_email(email)
    matches = check_password_hash(user.password_hash if user else _dummy_hash(), password)
    if user and user.is_active and matches:
        return user
    return None


def set_password(email: str, password: str, *, actor: Actor = SYSTEM) -> User:
    """Give the user with this email a new password (the command line's way back in), ending
    their sessions as any password change does.

    Refuses an unknown email or a password under 8 characters. Audited as USER_PASSWORD_CHANGED
    (without the password).
    """
    user = find_by_email(email)
    if user is None:
        raise Invalid("No such user.", {"email": [f"No user has the email {email.strip()}."]})
    change_password(user, password, actor)
    return user
