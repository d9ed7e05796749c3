"""Accounts: creating users, signing in, loading the session's user."""

from sqlalchemy import func, select
from werkzeug.security import check_password_hash, generate_password_hash

from webapp.extensions import db
from webapp.models import User
from webapp.services import audit
from webapp.services.actors import SYSTEM, Actor
from webapp.services.errors import Invalid

MIN_PASSWORD = 8


def load_user(user_id: str) -> User | None:
    return db.session.get(User, int(user_id))


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
        email=email, name=name.strip()[:255], is_site_admin=site_admin,
        password_hash=generate_password_hash(password),
    )
    db.session.add(user)
    db.session.flush()
    audit.record(actor, "USER_CREATED", f"User {email} created", project_id=None,
                 object_type="user", object_id=user.id, object_label=email,
                 after={"email": email, "site_admin": site_admin})
    db.session.commit()
    return user


def authenticate(email: str, password: str) -> User | None:
    user = find_by_email(email)
    if user and user.is_active and check_password_hash(user.password_hash, password):
        return user
    return None


def set_password(email: str, password: str, *, actor: Actor = SYSTEM) -> User:
    """Give the user with this email a new password (the command line's way back in).

    Refuses an unknown email or a password under 8 characters. Audited (without the password).
    """
    user = find_by_email(email)
    if user is None:
        raise Invalid("No such user.", {"email": [f"No user has the email {email.strip()}."]})
    if len(password) < MIN_PASSWORD:
        raise Invalid("Password too short.", {"password": [f"At least {MIN_PASSWORD} characters."]})
    user.password_hash = generate_password_hash(password)
    audit.record(actor, "USER_PASSWORD_SET", f"Password of {user.email} set", project_id=None,
                 object_type="user", object_id=user.id, object_label=user.email)
    db.session.commit()
    return user
