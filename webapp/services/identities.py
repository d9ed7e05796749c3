"""Identities the SDKs identify: their persisted traits, merged with the traits a request sends."""

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from webapp.database import begin_immediate
from webapp.extensions import db
from webapp.models import Identity
from webapp.services.errors import Invalid
from webapp.services.evaluation import TRAIT_VALUE_TYPES
from webapp.services.sdk_documents import fetch_one

MAX_IDENTIFIER = 2000
MAX_TRAIT_KEY = 200
MAX_TRAIT_STRING = 2000


def check_identifier(identifier: Any) -> str:
    if not isinstance(identifier, str) or not identifier.strip():
        raise Invalid("An identifier is required.",
                      {"identifier": ["A non-empty string is required."]})
    if len(identifier) > MAX_IDENTIFIER:
        raise Invalid("Identifier too long.",
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
    """[(key, value, transient)] from the wire's [{trait_key, trait_value, transient?}]."""
    if traits is None:
        return []
    if not isinstance(traits, list):
        raise Invalid("Traits must be a list.", {"traits": ["A list of {trait_key, trait_value}."]})
    checked = []
    for trait in traits:
        if not isinstance(trait, dict) or not isinstance(trait.get("trait_key"), str) \
                or not trait["trait_key"] or len(trait["trait_key"]) > MAX_TRAIT_KEY:
            raise Invalid("Bad trait.",
                          {"traits": ["Each trait needs a trait_key (1-200 characters)."]})
        value = trait.get("trait_value")
        if value is not None and not isinstance(value, TRAIT_VALUE_TYPES):
            raise Invalid("Bad trait value.",
                          {"traits": [f"{trait['trait_key']}: a string, number or boolean."]})
        if isinstance(value, str) and len(value) > MAX_TRAIT_STRING:
            raise Invalid("Trait value too long.",
                          {"traits": [f"{trait['trait_key']}: at most {MAX_TRAIT_STRING} chars."]})
        checked.append((trait["trait_key"], value, bool(trait.get("transient"))))
    return checked


def persisted_traits(environment_id: int, identifier: str) -> dict[str, Any]:
    """The identity's stored traits ({} for an identity never seen)."""
    return _stored(environment_id, identifier)[1]


def _stored(environment_id: int, identifier: str) -> tuple[bool, dict[str, Any]]:
    row = fetch_one("SELECT traits FROM identity WHERE environment_id = {} AND identifier = {}",
                    (environment_id, identifier))
    if row is None:
        return False, {}
    traits = json.loads(row[0]) if isinstance(row[0], str | bytes) else row[0]
    return True, dict(traits or {})


def identify(environment_id: int, identifier: str, traits: list[tuple[str, Any, bool]],
             transient: bool = False) -> dict[str, Any]:
    """The traits to evaluate with: persisted ones updated by those sent (None removes a trait).

    Unless the identity (or a trait) is transient, the identity and its changed traits are
    stored; an unchanged identity costs no write. Not audited (SDK traffic, like Flagsmith).
    """
    exists, stored = _stored(environment_id, identifier)
    effective, to_store = _merge(stored, traits)
    if transient or (exists and to_store == stored):
        return effective
    # Write under SQLite's write lock, re-reading first: a deferred read that turns into a
    # write fails at once if another writer committed in between, and merging must start from
    # the latest stored traits so that concurrent identifies do not lose each other's traits.
    db.session.rollback()
    begin_immediate()
    row = db.session.scalar(
        select(Identity).where(
            Identity.environment_id == environment_id, Identity.identifier == identifier
        )
    )
    effective, to_store = _merge(dict(row.traits or {}) if row else {}, traits)
    if row is None:
        db.session.add(Identity(environment_id=environment_id, identifier=identifier,
                                traits=to_store))
    else:
        row.traits = to_store
    try:
        db.session.commit()
    except IntegrityError:
        # PostgreSQL: another request created the identity meanwhile; theirs stands.
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
