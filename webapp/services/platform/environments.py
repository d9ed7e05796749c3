"""A project's environments: rename, the approvals rule, key rotation. Adding one lives in
`webapp.services.platform.projects.add_environment` (projects are created with theirs)."""

from sqlalchemy import select

from webapp.extensions import db
from webapp.models import Environment, ServerKey
from webapp.services.actors import Actor
from webapp.services.errors import Invalid, NotFound
from webapp.services.governance import audit
from webapp.services.platform import keys
from webapp.services.platform.flag_changes import bump_revision
from webapp.services.platform.projects import check_name

MAX_APPROVALS = 20
KEY_KINDS = {"client": "client key", "server": "server key"}


def get_environment(project_id: int, environment_id: int) -> Environment:
    """The project's environment; NotFound for one of another project or none."""
    env = db.session.get(Environment, environment_id)
    if env is None or env.project_id != project_id:
        raise NotFound("Environment not found.")
    return env


def parse_approvals(raw: object) -> int:
    """A whole number 0–20 from user input; Invalid on `approvals` otherwise."""
    try:
        number = int(str(raw).strip())
    except ValueError:
        number = -1
    if not 0 <= number <= MAX_APPROVALS:
        raise Invalid("Bad approvals.", {"approvals": [
            f"Enter a whole number from 0 (changes apply at once) to {MAX_APPROVALS}."]})
    return number


def update_environment(
    env: Environment, actor: Actor, *, name: str, approvals: object
) -> Environment:
    """Rename the environment and set how many approvals its changes need (0: none).

    Refuses an empty, over-long or taken name and an approvals count that is not a whole
    number 0–20 (Invalid, all messages at once). Audited as ENVIRONMENT_UPDATED with
    before/after (never the keys).
    """
    errors: dict[str, list[str]] = {}
    new_name, count = env.name, env.minimum_change_request_approvals
    try:
        new_name = check_name(name)
        taken = db.session.scalar(select(Environment.id).where(
            Environment.project_id == env.project_id, Environment.name == new_name,
            Environment.id != env.id))
        if taken:
            errors["name"] = ["This project already has an environment with this name."]
    except Invalid as error:
        errors.update(error.field_errors)
    try:
        count = parse_approvals(approvals)
    except Invalid as error:
        errors.update(error.field_errors)
    if errors:
        raise Invalid("Check the environment.", errors)
    before = {
        "name": env.name,
        "minimum_change_request_approvals": env.minimum_change_request_approvals,
    }
    after = {"name": new_name, "minimum_change_request_approvals": count}
    if before == after:
        return env
    env.name, env.minimum_change_request_approvals = new_name, count
    bump_revision(env.id)
    audit.record(actor, "ENVIRONMENT_UPDATED", f"Environment {before['name']} updated"
                 + (f" (renamed {new_name})" if new_name != before["name"] else ""),
                 project_id=env.project_id, environment_id=env.id, object_type="environment",
                 object_id=env.id, object_label=new_name, before=before, after=after)
    db.session.commit()
    return env


def rotate_key(env: Environment, kind: str, actor: Actor) -> str:
    """Give the environment a new client or server key (SDKs using the old one stop working).

    Refuses an unknown key kind (Invalid). Audited as ENVIRONMENT_KEY_ROTATED naming which key,
    without the key itself. Returns the new key.
    """
    if kind not in KEY_KINDS:
        raise Invalid("Unknown key.", {"kind": ["Choose the client or the server key."]})
    if kind == "client":
        env.client_key = new = keys.environment_client_key()
    else:
        env.server_key = new = keys.environment_server_key()
    bump_revision(env.id)
    audit.record(actor, "ENVIRONMENT_KEY_ROTATED", f"{env.name}: {KEY_KINDS[kind]} rotated",
                 project_id=env.project_id, environment_id=env.id, object_type="environment",
                 object_id=env.id, object_label=env.name, after={"rotated": KEY_KINDS[kind]})
    db.session.commit()
    return new


def server_keys(env: Environment) -> list[ServerKey]:
    """The environment's named server-side keys (admin API), oldest first."""
    return list(db.session.scalars(
        select(ServerKey).where(ServerKey.environment_id == env.id).order_by(ServerKey.id)
    ))


def create_server_key(env: Environment, name: str, actor: Actor) -> tuple[ServerKey, str]:
    """A new named server-side key (`ser.`…) for local evaluation; returns the row and the key,
    which is stored hashed and never shown again. Refuses a bad name (Invalid). Audited as
    SERVER_KEY_CREATED (the prefix only)."""
    name = check_name(name)
    secret = keys.environment_server_key()
    row = ServerKey(environment_id=env.id, name=name, prefix=secret[:8],
                    key_hash=keys.hash_key(secret))
    db.session.add(row)
    db.session.flush()
    audit.record(actor, "SERVER_KEY_CREATED", f"{env.name}: server-side key {name} created",
                 project_id=env.project_id, environment_id=env.id, object_type="server_key",
                 object_id=row.id, object_label=name, after={"name": name, "prefix": row.prefix})
    db.session.commit()
    return row, secret


def delete_server_key(env: Environment, key_id: int, actor: Actor) -> None:
    """Delete one of the environment's named server-side keys: SDKs using it get 401 on their
    next request. Refuses a key of another environment (NotFound). Audited as
    SERVER_KEY_DELETED."""
    row = db.session.get(ServerKey, key_id) if 0 < key_id < 2**31 else None
    if row is None or row.environment_id != env.id:
        raise NotFound("Server-side key not found.")
    db.session.delete(row)
    # Processes that cache key lookups (platform/revisions.py) forget them when a revision moves.
    bump_revision(env.id)
    audit.record(actor, "SERVER_KEY_DELETED", f"{env.name}: server-side key {row.name} deleted",
                 project_id=env.project_id, environment_id=env.id, object_type="server_key",
                 object_id=key_id, object_label=row.name,
                 before={"name": row.name, "prefix": row.prefix})
    db.session.commit()
