"""Flag analytics: how often SDKs evaluate each flag, per environment and UTC day.

SDKs with analytics on post `{"<flag name>": <count>}` every few seconds. Counting must cost the
SDK API next to nothing, so a post is one Redis round trip (HINCRBY into a hash per environment
and day); the sweeper adds the buffered counts to `flag_evaluation_count` (one upsert per flag,
environment and day), which is what the pages read. Counts for flag names the project does not
have are dropped at flush, as Flagsmith drops them.
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Date, Integer, Select, any_, bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from webapp import redis_conn
from webapp.clock import now
from webapp.extensions import db
from webapp.models import Environment, Feature, FlagEvaluationCount
from webapp.services.errors import Invalid

log = logging.getLogger(__name__)

PREFIX = "railyard:analytics:"
PENDING = PREFIX + "pending"  # the set of hash keys that hold counts not yet in the database
MAX_FLAGS_PER_POST = 1000  # a project with more flags than this posts in several requests
MAX_COUNT = 10**9  # per flag and post; SDKs flush every 10 s
MAX_NAME = 255
# A buffered hash lives at most this long if no sweeper runs (then the counts are lost).
BUFFER_TTL_SECONDS = 7 * 86400
FLAG_PAGE_DAYS = 14


def check_counts(payload: Any) -> dict[str, int]:
    """{flag name: count} from an analytics post; refuses anything else (Invalid)."""
    if not isinstance(payload, dict):
        raise Invalid("Send a JSON object: {\"<flag name>\": <count>}.")
    if len(payload) > MAX_FLAGS_PER_POST:
        raise Invalid(f"At most {MAX_FLAGS_PER_POST} flags per request.")
    counts = {}
    for name, count in payload.items():
        if not name or len(name) > MAX_NAME:
            raise Invalid("Bad flag name.", {"flags": [f"Flag names are 1-{MAX_NAME} characters."]})
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COUNT:
            raise Invalid("Bad count.", {name: [f"A whole number from 0 to {MAX_COUNT}."]})
        if count:
            counts[name] = count
    return counts


def record(environment_id: int, counts: dict[str, int]) -> None:
    """Buffer an SDK's evaluation counts for today (UTC) in Redis: one round trip, no database
    write. Not audited (SDK traffic)."""
    if not counts:
        return
    key = f"{PREFIX}{environment_id}:{now().date().isoformat()}"
    pipe = redis_conn.connection().pipeline(transaction=False)
    for name, count in counts.items():
        pipe.hincrby(key, name, count)
    pipe.expire(key, BUFFER_TTL_SECONDS)
    pipe.sadd(PENDING, key)
    pipe.execute()


def flush() -> int:
    """Add every buffered count to `flag_evaluation_count`; returns how many rows were written.

    Each hash is taken and deleted atomically (MULTI), so counts posted meanwhile go to a fresh
    hash; if the database write fails, the counts are put back for the next pass.
    """
    connection = redis_conn.connection()
    written = 0
    for raw_key in connection.smembers(PENDING):
        key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        pipe = connection.pipeline(transaction=True)
        pipe.hgetall(key)
        pipe.delete(key)
        pipe.srem(PENDING, key)
        buffered = pipe.execute()[0]
        if not buffered:
            continue
        counts = {name.decode(): int(count) for name, count in buffered.items()}
        try:
            environment_id, day = _parse_key(key)
            written += _add(environment_id, day, counts)
        except ValueError:
            log.warning("analytics: dropped the counts of a malformed key %s", key)
        except Exception:
            db.session.rollback()
            _put_back(key, counts)
            raise
    return written


def _parse_key(key: str) -> tuple[int, date]:
    environment_id, day = key.removeprefix(PREFIX).split(":")
    return int(environment_id), date.fromisoformat(day)


def _put_back(key: str, counts: dict[str, int]) -> None:
    pipe = redis_conn.connection().pipeline(transaction=False)
    for name, count in counts.items():
        pipe.hincrby(key, name, count)
    pipe.sadd(PENDING, key)
    pipe.execute()


def _add(environment_id: int, day: date, counts: dict[str, int]) -> int:
    features = dict(db.session.execute(
        select(Feature.name, Feature.id)
        .join(Environment, Environment.project_id == Feature.project_id)
        .where(Environment.id == environment_id, Feature.name.in_(list(counts)))
    ).all())
    rows = [{"feature_id": feature_id, "environment_id": environment_id, "day": day,
             "count": counts[name]} for name, feature_id in features.items()]
    if not rows:
        return 0
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(FlagEvaluationCount).values(rows)
    # Several sweepers may flush at once: the unique (feature, environment, day) row is added to.
    db.session.execute(statement.on_conflict_do_update(
        index_elements=["feature_id", "environment_id", "day"],
        set_={"count": FlagEvaluationCount.count + statement.excluded.count}))
    db.session.commit()
    return len(rows)


@dataclass(frozen=True)
class Evaluations:
    """The flag page's table: per environment, evaluations on each of the last days."""

    days: list[date]  # oldest first, today (UTC) last
    rows: list[tuple[str, list[int]]]  # (environment name, count per day)

    @property
    def any(self) -> bool:
        return any(any(counts) for _name, counts in self.rows)


def daily(feature_id: int, environments: Iterable[Environment],
          days: int = FLAG_PAGE_DAYS) -> Evaluations:
    """The flag's evaluations per environment and UTC day over the last `days` days: one query."""
    today = now().date()
    span = [today - timedelta(days=n) for n in range(days - 1, -1, -1)]
    per: dict[int, dict[date, int]] = {}
    for environment_id, day, count in db.session.execute(
        select(FlagEvaluationCount.environment_id, FlagEvaluationCount.day,
               FlagEvaluationCount.count)
        .where(FlagEvaluationCount.feature_id == feature_id, FlagEvaluationCount.day >= span[0])
    ):
        per.setdefault(environment_id, {})[day] = count
    return Evaluations(span, [(env.name, [per.get(env.id, {}).get(day, 0) for day in span])
                              for env in environments])


def recent(pairs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """Evaluations since yesterday (UTC) per (feature, environment), for the given pairs: one
    query. Pairs never read are absent."""
    pairs = set(pairs)
    if not pairs:
        return {}
    since = now().date() - timedelta(days=1)
    features = {feature for feature, _env in pairs}
    environments = {env for _feature, env in pairs}
    postgres = db.session.get_bind().dialect.name == "postgresql"
    found: Sequence[Any] = db.session.connection().execute(
        _recent(postgres), {"features": sorted(features), "environments": sorted(environments),
                            "since": since}).all()
    return {(f, e): int(n) for f, e, n in found if (f, e) in pairs}


@lru_cache(maxsize=2)
def _recent(postgres: bool) -> Select:
    """Built once: every board poll reads it. The ids go to PostgreSQL as two arrays: one
    statement (and plan) whatever their number, where IN lists make one per length."""
    def among(column: Any, name: str) -> Any:
        if postgres:
            return column == any_(bindparam(name, type_=ARRAY(Integer)))
        return column.in_(bindparam(name, expanding=True))

    return (select(FlagEvaluationCount.feature_id, FlagEvaluationCount.environment_id,
                   func.sum(FlagEvaluationCount.count))
            .where(among(FlagEvaluationCount.feature_id, "features"),
                   among(FlagEvaluationCount.environment_id, "environments"),
                   FlagEvaluationCount.day >= bindparam("since", type_=Date))
            .group_by(FlagEvaluationCount.feature_id, FlagEvaluationCount.environment_id))
