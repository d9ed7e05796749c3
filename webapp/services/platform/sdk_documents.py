"""What the SDK API serves, in Flagsmith's wire format, cached per (environment, revision).

A flag read costs one indexed query (the key's environment and its revision). The documents
are built from the database only when the revision moved, so any change (by a person, the API
or a pipeline) is visible on the next request, and an unchanged environment is never re-read.
Each process keeps its own small LRU; nothing is shared between processes but the database.
"""

import functools
import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flag_engine.context.types import EvaluationContext
from sqlalchemy import select
from sqlalchemy.engine import Engine
from werkzeug.http import http_date

from webapp.database import configure_sqlite
from webapp.extensions import db
from webapp.models import Environment, Feature, FeatureState, Segment, SegmentOverride
from webapp.services.platform import evaluation, keys, regexes, revisions

SERVER_KEY_PREFIX = "ser."
CACHE_SIZE = 256
_UUID_NAMESPACE = uuid.UUID("6f1c3c2e-5d0a-4f0e-9f57-2b7a1c0e9d11")


@dataclass(frozen=True)
class EnvironmentRef:
    """The environment a key opens, as of this request."""

    id: int
    revision: int
    client_key: str
    server_key_used: bool


@dataclass(frozen=True)
class Documents:
    """Everything the SDK API answers for one environment revision, serialized once."""

    revision: int
    etag: str
    last_modified: str  # HTTP date of the newest change the documents show
    flags: list[dict[str, Any]]  # the /flags/ items, in feature order
    flags_json: bytes
    flag_by_name: dict[str, dict[str, Any]]  # the same items by feature name, in feature order
    flag_json_by_name: dict[str, bytes]
    environment_document: dict[str, Any]
    environment_document_json: bytes
    context: EvaluationContext  # the flag engine's evaluation context (no identity)
    flags_context: EvaluationContext  # the same, only the segments that override a flag
    # The traits flags_context reads, when an identity's flags depend on nothing else
    # (evaluation.trait_keys_read): identities alike in those share their flags' bytes.
    trait_keys_read: tuple[str, ...] | None
    updated_at: float  # the document's updated_at in epoch seconds (the realtime SDKs compare)


def find_environment(key: str) -> EnvironmentRef | None:
    """The environment opened by a client key or a server key (`ser.` prefix), or None.

    The answer comes from this process's key cache while it holds one (platform/revisions.py
    says how long, and how a change reaches it); otherwise one indexed read.
    """
    if not key:
        return None
    cache = revisions.key_cache(db.engine)
    return _read_environment(key) if cache is None else cache.get(key, _read_environment)


def _read_environment(key: str) -> EnvironmentRef | None:
    server = key.startswith(SERVER_KEY_PREFIX)
    if server:
        # The environment's own server key, or one of its named keys (stored hashed): still one
        # round trip, both sides on a unique index.
        row = fetch_one(
            "SELECT id, revision, client_key FROM environment WHERE server_key = {} UNION ALL "
            "SELECT e.id, e.revision, e.client_key FROM server_key k "
            "JOIN environment e ON e.id = k.environment_id WHERE k.key_hash = {}",
            (key, keys.hash_key(key)),
        )
    else:
        row = fetch_one("SELECT id, revision, client_key FROM environment WHERE client_key = {}",
                        (key,))
    if row is None:
        return None
    return EnvironmentRef(id=row[0], revision=row[1], client_key=row[2], server_key_used=server)


def fetch_one(sql: str, params: tuple) -> tuple | None:
    """One row of a one-statement read on a pooled DBAPI connection, `{}` as placeholders.

    The hot path of every SDK request: the ORM session costs ~0.3-0.5 ms per query against
    ~15 µs here, and a single SELECT needs no session, unit of work or explicit transaction.
    """
    return _one_statement(sql, params, lambda cursor: cursor.fetchone())


def execute_one(sql: str, params: tuple) -> int:
    """One statement that is its own transaction (autocommit), `{}` as placeholders; the
    number of rows it wrote."""
    return _one_statement(sql, params, lambda cursor: cursor.rowcount)


def _one_statement(sql: str, params: tuple, result):
    # Autocommit: on PostgreSQL one round trip, where a transaction would add a BEGIN before
    # the statement and a COMMIT or ROLLBACK after it. SQLite's connections are in autocommit
    # already (database.configure_sqlite), so a write takes the lock for this statement only.
    engine = db.engine
    if engine.dialect.name == "postgresql":
        held = _own_postgresql_connection(engine)
        try:
            with held.cursor() as held_cursor:
                held_cursor.execute(sql.format(*(["%s"] * len(params))), params)
                return result(held_cursor)
        except Exception:
            # Broken (PostgreSQL restarted, the network) or not: a new one next time, as the
            # pool would invalidate it. The caller answers the error its way.
            _kept.held = None
            held.close()
            raise
    own = _own_sqlite_connection(engine)
    if own is not None:
        own_cursor = own.execute(sql.format(*(["?"] * len(params))), params)
        answer = result(own_cursor)
        own_cursor.close()
        return answer
    connection = engine.raw_connection()  # an in-memory SQLite database: the pool's
    try:
        cursor = connection.cursor()
        cursor.execute(sql.format(*(["?"] * len(params))), params)
        answer = result(cursor)
        cursor.close()
        return answer
    finally:
        connection.close()  # back to the pool


class _Kept(threading.local):
    """This thread's kept connection and what it is to: (pid, database) and the connection."""

    held: tuple[tuple[int, Any], Any] | None = None


_kept = _Kept()
_forked_away: list[Any] = []  # a parent's connections: never used nor closed in a child


def _thread_connection(database: Any, connect: Callable[[], Any]) -> Any:
    """This thread's own connection to `database`, made by connect() once and kept open: for
    one statement a pooled one costs its checkout, reset and return (~10 µs on SQLite, ~50 µs
    on PostgreSQL with autocommit turned on and off), a tenth of a flags read."""
    key = (os.getpid(), database)
    held = _kept.held
    if held is not None and held[0] == key:
        return held[1]
    if held is not None:
        if held[0][0] == key[0]:
            held[1].close()  # another database (tests make one each)
        else:
            _forked_away.append(held[1])
    connection = connect()
    _kept.held = (key, connection)
    return connection


def _own_postgresql_connection(engine: Engine) -> Any:
    """This thread's own connection to the engine's PostgreSQL database (psycopg), in
    autocommit: made by the pool (so configured as its others), then detached from it."""

    def connect() -> Any:
        pooled = engine.raw_connection()
        connection = pooled.driver_connection
        assert connection is not None  # a connection just checked out of the pool is open
        pooled.detach()
        connection.autocommit = True
        return connection

    return _thread_connection(engine.url, connect)


def _own_sqlite_connection(engine: Engine) -> sqlite3.Connection | None:
    """This thread's own connection to the engine's SQLite file, configured as the engine's.
    None for an in-memory database (only the pool's connection holds it)."""
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:") or engine.url.query:
        return None

    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(path)
        configure_sqlite(connection)
        return connection

    connection: sqlite3.Connection = _thread_connection(path, connect)
    return connection


class _Cache:
    """A small thread-safe LRU keyed by environment; an entry is valid for one revision."""

    def __init__(self, size: int):
        self._size = size
        self._entries: OrderedDict[tuple[int, str], Documents] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, ref: EnvironmentRef) -> Documents | None:
        # The client key is part of the key so that a rotated key, or another database that
        # reuses the same ids (tests), can never be answered from a stale entry.
        key = (ref.id, ref.client_key)
        with self._lock:
            docs = self._entries.get(key)
            if docs is None or docs.revision != ref.revision:
                return None
            self._entries.move_to_end(key)
            return docs

    def put(self, ref: EnvironmentRef, docs: Documents) -> None:
        with self._lock:
            self._entries[(ref.id, ref.client_key)] = docs
            self._entries.move_to_end((ref.id, ref.client_key))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_cache = _Cache(CACHE_SIZE)


def documents_for(ref: EnvironmentRef) -> Documents:
    """The environment's documents at `ref.revision`, from the cache or built now."""
    docs = _cache.get(ref)
    if docs is None:
        docs = _build(ref)
        _cache.put(ref, docs)
    return docs


def cached(ref: EnvironmentRef) -> Documents | None:
    """The environment's documents at `ref.revision` if this process built them already."""
    return _cache.get(ref)


def identity_json(docs: Documents, identifier: str, traits: dict[str, Any]) -> bytes:
    """The identities answer `{identifier, flags, traits}`, evaluated on these traits."""
    trait_list = [{"trait_key": key, "trait_value": value} for key, value in traits.items()]
    return b"".join((b'{"identifier":', _dumps(identifier), b',"flags":',
                     _identity_flags_json(docs, identifier, traits),
                     b',"traits":', _dumps(trait_list), b"}"))


# Identities' flags, serialized, by (documents, values of the traits their segments read): the
# evaluation and the flags' bytes were most of an identify's CPU, and identities mostly share
# the few trait values segments test (a plan, a country). Cleared when full (a lookup is a few
# µs, a miss one evaluation); long texts are not kept, so it stays a few MB at most.
FLAGS_BY_TRAITS_SIZE = 4096
MAX_KEPT_TEXT = 100
_flags_by_traits: dict[tuple, bytes] = {}


def _identity_flags_json(docs: Documents, identifier: str, traits: dict[str, Any]) -> bytes:
    if docs.trait_keys_read is None:
        return _flags_json(docs, identifier, traits)
    key = (docs.etag, *(_typed(traits.get(name)) for name in docs.trait_keys_read))
    flags = _flags_by_traits.get(key)
    if flags is None:
        flags = _flags_json(docs, identifier, traits)
        if not any(isinstance(value, str) and len(value) > MAX_KEPT_TEXT
                   for value in traits.values()):
            if len(_flags_by_traits) >= FLAGS_BY_TRAITS_SIZE:
                _flags_by_traits.clear()
            _flags_by_traits[key] = flags
    return flags


def _typed(value: Any) -> Any:
    """A trait value as the engine tells it from others: `1`, `1.0` and `true` are equal in
    Python but not to a condition, nor are `0.0` and `-0.0` to a regex (repr tells them)."""
    if value is None:
        return None
    return value.__class__, repr(value) if value.__class__ is float else value


def _flags_json(docs: Documents, identifier: str, traits: dict[str, Any]) -> bytes:
    """The identity's flags: those no segment override decides are the environment's, already
    serialized."""
    decided = evaluation.identity_flags(docs.flags_context, identifier, traits)
    if not decided:
        return docs.flags_json
    parts = [serialized if name not in decided else _dumps(
                 {**docs.flag_by_name[name], "enabled": decided[name][0],
                  "feature_state_value": decided[name][1]})
             for name, serialized in docs.flag_json_by_name.items()]
    return b"".join((b"[", b",".join(parts), b"]"))


def clear_cache() -> None:
    _cache.clear()
    _flags_by_traits.clear()


def etag_for(ref: EnvironmentRef) -> str:
    salt = hashlib.sha256(ref.client_key.encode()).hexdigest()[:10]
    return f"{ref.id}-{ref.revision}-{salt}"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _aware(moment).isoformat()


@functools.lru_cache(maxsize=1 << 16)
def _state_uuid(kind: str, row_id: int) -> str:
    # A row's uuid never changes, and uuid5 (a SHA-1 and a UUID object) was a third of a
    # rebuild's CPU once the rows were plain: remembered, a rebuild computes only new rows'.
    return str(uuid.uuid5(_UUID_NAMESPACE, f"{kind}-{row_id}"))


def _state_document(kind: str, row_id: int, feature: Any, enabled: bool, value: Any,
                    priority: int | None = None) -> dict[str, Any]:
    """`feature`: anything with the flag's `id` and `name` (a row of `_FEATURE_COLUMNS`)."""
    return {
        "feature": {"id": feature.id, "name": feature.name, "type": "STANDARD"},
        "enabled": enabled,
        "django_id": row_id,
        "featurestate_uuid": _state_uuid(kind, row_id),
        "feature_segment": None if priority is None else {"priority": priority},
        "feature_state_value": value,
        "multivariate_feature_state_values": [],
    }


def _condition_value(value: Any) -> str | None:
    """Flagsmith documents carry condition values as strings (IN: comma-separated)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(_condition_value(item) or "" for item in value)
    return str(value)


def rules_document(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Railyard's rule tree in the environment document's shape (`property_`)."""
    return [
        {
            "type": rule.get("type", "ALL"),
            "conditions": [
                {
                    "operator": condition.get("operator"),
                    "property_": condition.get("property") or "",
                    "value": _condition_value(condition.get("value")),
                }
                for condition in rule.get("conditions") or []
            ],
            "rules": rules_document(rule.get("rules") or []),
        }
        for rule in rules or []
    ]


# What the documents show of each flag and of its state in the environment. Plain rows, not ORM
# objects: a rebuild reads every flag of the project, and making an identity-mapped object of
# each flag and state (and decoding the flags' tags, which no document shows) was over half of
# a rebuild's CPU; every SDK-visible change costs one rebuild per web process.
_FEATURE_COLUMNS = (Feature.id, Feature.name, Feature.created_at, Feature.description,
                    Feature.default_value, Feature.default_enabled)
_STATE_COLUMNS = (FeatureState.feature_id, FeatureState.id, FeatureState.enabled,
                  FeatureState.value, FeatureState.updated_at)


def _build(ref: EnvironmentRef) -> Documents:
    env = db.session.get_one(Environment, ref.id)
    project = env.project
    features = db.session.execute(
        select(*_FEATURE_COLUMNS).where(Feature.project_id == project.id).order_by(Feature.id)
    ).all()
    by_id = {feature.id: feature for feature in features}
    states = {
        state.feature_id: state
        for state in db.session.execute(
            select(*_STATE_COLUMNS).where(FeatureState.environment_id == env.id)
        )
    }
    segments = list(db.session.scalars(
        select(Segment).where(Segment.project_id == project.id).order_by(Segment.id)
    ))
    overrides: dict[int, list[SegmentOverride]] = {}
    for override in db.session.scalars(
        select(SegmentOverride).where(SegmentOverride.environment_id == env.id)
        .order_by(SegmentOverride.priority, SegmentOverride.id)
    ):
        overrides.setdefault(override.segment_id, []).append(override)

    flags: list[dict[str, Any]] = []
    feature_states: list[dict[str, Any]] = []
    moments: list[datetime] = [env.created_at]
    for feature in features:
        state = states.get(feature.id)
        enabled = state.enabled if state else feature.default_enabled
        value = state.value if state else feature.default_value
        state_id = state.id if state else 0
        if state is not None:
            moments.append(state.updated_at)
        flags.append({
            "id": state_id,
            "feature": {
                "id": feature.id,
                "name": feature.name,
                "created_date": _iso(feature.created_at),
                "description": feature.description or None,
                "initial_value": feature.default_value,
                "default_enabled": feature.default_enabled,
                "type": "STANDARD",
            },
            "feature_state_value": value,
            "enabled": enabled,
            "environment": env.id,
            "identity": None,
            "feature_segment": None,
        })
        feature_states.append(_state_document("state", state_id, feature, enabled, value))

    segment_documents = []
    for segment in segments:
        if regexes.refused_in(segment.rules):
            # Saved before Railyard refused its pattern: an SDK evaluating locally would run it
            # with a backtracking engine. Left out, it matches no one, here and in every SDK.
            continue
        moments.append(segment.updated_at)
        segment_states = []
        for override in overrides.get(segment.id, []):
            overridden = by_id.get(override.feature_id)
            if overridden is None:
                continue
            moments.append(override.updated_at)
            segment_states.append(_state_document(
                "override", override.id, overridden, override.enabled, override.value,
                priority=override.priority,
            ))
        segment_documents.append({
            "id": segment.id,
            "name": segment.name,
            "rules": rules_document(segment.rules),
            "feature_states": segment_states,
        })

    organisation = project.organisation
    updated_at = max(_aware(m) for m in moments if m is not None)
    document = {
        "id": env.id,
        "api_key": env.client_key,
        "name": env.name,
        "project": {
            "id": project.id,
            "name": project.name,
            "organisation": {
                "id": organisation.id,
                "name": organisation.name,
                "feature_analytics": False,
                "stop_serving_flags": False,
                "persist_trait_data": True,
            },
            "hide_disabled_flags": False,
            "segments": segment_documents,
            "enable_realtime_updates": False,
            "server_key_only_feature_ids": [],
        },
        "feature_states": feature_states,
        "identity_overrides": [],
        "allow_client_traits": True,
        "hide_sensitive_data": False,
        "hide_disabled_flags": None,
        "use_identity_composite_key_for_hashing": True,
        "use_identity_overrides_in_local_eval": False,
        "updated_at": _iso(updated_at),
    }
    context = evaluation.context_from_document(document)
    # Each flag serialized once: the list's JSON is its items' joined (the same bytes).
    flag_parts = [_dumps(flag) for flag in flags]
    flags_context = evaluation.deciding(context)
    return Documents(
        revision=ref.revision,
        etag=etag_for(ref),
        last_modified=http_date(max(m for m in moments if m is not None)),
        flags=flags,
        flags_json=b"".join((b"[", b",".join(flag_parts), b"]")),
        flag_by_name={flag["feature"]["name"]: flag for flag in flags},
        flag_json_by_name={flag["feature"]["name"]: part
                           for flag, part in zip(flags, flag_parts, strict=True)},
        environment_document=document,
        environment_document_json=_dumps(document),
        context=context,
        flags_context=flags_context,
        trait_keys_read=evaluation.trait_keys_read(flags_context),
        updated_at=updated_at.timestamp(),
    )
