"""Organisation API keys and user tokens: created once, stored hashed."""

from sqlalchemy import select

from webapp.clock import now
from webapp.extensions import db
from webapp.models import ApiKey, Organisation, User
from webapp.services.actors import Actor
from webapp.services.governance import audit
from webapp.services.platform import keys
from webapp.services.platform.projects import check_name


def create_organisation_key(
    organisation: Organisation, name: str, actor: Actor
) -> tuple[ApiKey, str]:
    """Create an organisation API key; returns the row and the key (never stored). Audited."""
    return _create("organisation", name, actor, organisation_id=organisation.id)


def create_user_token(user: User, name: str, actor: Actor) -> tuple[ApiKey, str]:
    """Create a personal token acting as `user`; returns the row and the token. Audited."""
    return _create("user", name, actor, user_id=user.id)


def _create(kind: str, name: str, actor: Actor, **owner) -> tuple[ApiKey, str]:
    name = check_name(name)
    secret = keys.new_api_key()
    row = ApiKey(kind=kind, name=name, prefix=secret[:8], key_hash=keys.hash_key(secret), **owner)
    db.session.add(row)
    db.session.flush()
    audit.record(actor, "API_KEY_CREATED",
                 f"{'API key' if kind == 'organisation' else 'Token'} {name} created",
                 project_id=None, object_type="api_key", object_id=row.id, object_label=name,
                 organisation_id=owner.get("organisation_id"),
                 after={"name": name, "prefix": row.prefix})
    db.session.commit()
    return row, secret


def find_active(secret: str) -> ApiKey | None:
    row = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == keys.hash_key(secret)))
    if row is None or row.revoked_at is not None:
        return None
    return row


def revoke(row: ApiKey, actor: Actor) -> None:
    row.revoked_at = now()
    audit.record(actor, "API_KEY_REVOKED", f"Key {row.name} revoked", project_id=None,
                 object_type="api_key", object_id=row.id, object_label=row.name,
                 organisation_id=row.organisation_id)
    db.session.commit()
