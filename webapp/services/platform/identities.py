"""Identities the SDKs identify: their persisted traits, merged with the traits a request sends."""

import hashlib
import json
from datetime import UTC
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp.clock import now
from webapp.database import begin_immediate
from webapp.extensions import db
from webapp.models import Identity
from webapp.services.errors import BadRequest
from webapp.services.platform.evaluation import TRAIT_VALUE_TYPES
from webapp.services.platform.sdk_documents import execute_one, fetch_one

# Flagsmith's bounds: identifiers and trait values up to 2000 characters, trait keys up to 200.
# They also bound what a segment condition is evaluated on.
MAX_IDENTIFIER = 2000
MAX_TRAIT_KEY = 200
MAX_TRAIT_STRING = 2000


def check_identifier(identifier: Any) -> str:
    if not isinstance(identifier, str) or not identifier.strip():
        raise BadRequest("An identifier is required.",
                      {"identifier": ["A non-empty string is required."]})
    if len(identifier) > MAX_IDENTIFIER:
        raise BadRequest("Identifier too long.",
                      {"identifier": [f"At most {MAX_IDENTIFIER} characters."]})
    return identifier


def resolve_identifier(identifier: Any, traits: list[tuple[str, Any, bool]],
                       transient: bool) -> tuple[str, bool]:
    """(identifier, transient) for an identify request, as Flagsmith reads it: a missing or blank
    identifier is a transient identity, named by a hash of its traits so that the same traits
    land in the same percentage-split bucket on every call. Refuses a non-string identifier."""
    if identifier is None or (isinstance(identifier, str) and not identifier.strip()):
        return transient_identifier(traits), True
    return check_identifier(identifier), transient


def transient_identifier(traits: list[tuple[str, Any, bool]]) -> str:
    canonical = json.dumps(sorted([key, value] for key, value, _transient in traits),
                           separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_traits(traits: Any) -> list[tuple[str, Any, bool]]:
    """[(key, value, transient)] from the wire's [{trait_key, trait_value, transient?}].

    Refuses (400, BadRequest) a non-list, a trait without a key of 1-200 characters, a value
    that is not a string, number or boolean, and a string value over 2000 characters."""
    if traits is None:
        return []
    if not isinstance(traits, list):
        raise BadRequest("Traits must be a list.",
                         {"traits": ["A list of {trait_key, trait_value}."]})
    checked = []
    for trait in traits:
        key = trait.get("trait_key") if isinstance(trait, dict) else None
        if not isinstance(key, str) or not key or len(key) > MAX_TRAIT_KEY:
            raise BadRequest(f"Each trait needs a trait_key of 1-{MAX_TRAIT_KEY} characters.",
                             {"traits": [f"A trait_key of 1-{MAX_TRAIT_KEY} characters."]})
        value = trait.get("trait_value")
        if value is not None and not isinstance(value, TRAIT_VALUE_TYPES):
            raise BadRequest(f"Trait {key}: the value must be a string, number or boolean.",
                             {"traits": [f"{key}: a string, number or boolean."]})
        if isinstance(value, str) and len(value) > MAX_TRAIT_STRING:
            raise BadRequest(f"Trait {key}: the value is longer than {MAX_TRAIT_STRING} "
                             "characters.",
                             {"traits": [f"{key}: at most {MAX_TRAIT_STRING} characters."]})
        checked.append((key, value, bool(trait.get("transient"))))
    return checked


def persisted_traits(environment_id: int, identifier: str) -> dict[str, Any]:
    """The identity's stored traits ({} for an identity never seen)."""
    return _stored(environment_id, identifier)[1]


def _stored(environment_id: int, identifier: str) -> tuple[str | None, dict[str, Any]]:
    """(the stored traits as text, or None for an identity never seen; the traits)."""
    row = fetch_one("SELECT CAST(traits AS TEXT) FROM identity "
                    "WHERE environment_id = {} AND identifier = {}", (environment_id, identifier))
    if row is None:
        return None, {}
    return row[0], dict(json.loads(row[0]) or {})


def identify(environment_id: int, identifier: str, traits: list[tuple[str, Any, bool]],
             transient: bool = False) -> dict[str, Any]:
    """The traits to evaluate with: persisted ones updated by those sent (None removes a trait).

    Unless the identity (or a trait) is transient, the identity and its changed traits are
    stored; an unchanged identity costs no write. Not audited (SDK traffic, like Flagsmith).
    On PostgreSQL the write commits asynchronously (see _ASYNCHRONOUS_COMMIT).
    """
    text, stored = _stored(environment_id, identifier)
    effective, to_store = _merge(stored, traits)
    if transient or (text is not None and to_store == stored):
        return effective
    # One statement in autocommit when nobody wrote the identity since we read it: an insert
    # that yields to a concurrent one, or an update only if the stored text is still what we
    # read (compare-and-set). Anyone else's write in between: merge again under the lock.
    # A transaction the session opened ends first: in a POST it holds SQLite's write lock.
    if db.session.registry.has():
        db.session.rollback()
    postgresql = db.engine.dialect.name == "postgresql"
    if text is None:
        written = execute_one(_INSERT_POSTGRESQL if postgresql else _INSERT,
                              (environment_id, identifier, json.dumps(to_store), _timestamp()))
    else:
        written = execute_one(_UPDATE + _ASYNCHRONOUS_COMMIT if postgresql else _UPDATE,
                              (json.dumps(to_store), environment_id, identifier, text))
    if written == 1:
        return effective
    return _identify_locked(environment_id, identifier, traits)


# On PostgreSQL, trait writes commit asynchronously (synchronous_commit off): the answer does not
# wait for the WAL to reach the disk, a few milliseconds per write that kept each web worker
# idle for most of an identify. What a PostgreSQL crash (not a Railyard one) can lose is the last
# fraction of a second of trait writes (at most 3 x wal_writer_delay, 0.6 s by default), never a
# half write: the SDKs send an identity's traits with every identify, so the next call stores
# them again. Only these statements: set_config(..., true) in the statement itself sets it for
# its own transaction (an autocommit statement has no transaction block to SET LOCAL in), and a
# row is written only where the condition, so the setting, was evaluated.
_ASYNCHRONOUS_COMMIT = " AND set_config('synchronous_commit', 'off', true) IS NOT NULL"
_UPDATE = ("UPDATE identity SET traits = {} WHERE environment_id = {} AND identifier = {} "
           "AND CAST(traits AS TEXT) = {}")
_INSERT = ("INSERT INTO identity (environment_id, identifier, traits, created_at) "
           "VALUES ({}, {}, {}, {}) ON CONFLICT (environment_id, identifier) DO NOTHING")
_INSERT_POSTGRESQL = ("INSERT INTO identity (environment_id, identifier, traits, created_at) "
                      "SELECT {}, {}, CAST({} AS JSON), {} WHERE TRUE" + _ASYNCHRONOUS_COMMIT
                      + " ON CONFLICT (environment_id, identifier) DO NOTHING")


def _timestamp() -> Any:
    # As the ORM stores a UTCDateTime column: naive UTC, as text on SQLite.
    moment = now().astimezone(UTC).replace(tzinfo=None)
    if db.engine.dialect.name == "sqlite":
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


def _identify_locked(environment_id: int, identifier: str,
                     traits: list[tuple[str, Any, bool]]) -> dict[str, Any]:
    # Write under the identity's lock, re-reading first, so that concurrent identifies do not
    # lose each other's traits: merging starts from the latest stored traits. SQLite: its write
    # lock (BEGIN IMMEDIATE; a deferred read that turns into a write fails at once if another
    # writer committed in between). PostgreSQL: the row's lock (FOR UPDATE); an identity another
    # request created meanwhile is merged into on a second pass.
    for _attempt in range(2):
        db.session.rollback()
        begin_immediate()
        row = db.session.scalar(
            select(Identity).where(
                Identity.environment_id == environment_id, Identity.identifier == identifier
            ).with_for_update()
        )
        effective, to_store = _merge(dict(row.traits or {}) if row else {}, traits)
        if row is None:
            db.session.add(Identity(environment_id=environment_id, identifier=identifier,
                                    traits=to_store))
        else:
            row.traits = to_store
        try:
            db.session.commit()
            break
        except IntegrityError:
            db.session.rollback()
    return effective


def _merge(stored: dict[str, Any], traits: list[tuple[str, Any, bool]]) -> tuple[dict, dict]:
    effective, to_store = dict(stored), dict(stored)
    for key, value, trait_transient in traits:
        if value is None:
            effective.pop(key, None)
            to_store.pop(key, None)
            continue
        effective[key] = value
        if not trait_transient:
            to_store[key] = value
    return effective, to_store
