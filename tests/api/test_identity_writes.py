"""What an identify stores: concurrent identifies of one identity lose none of each other's
traits (compare-and-set, then a merge under the lock), through a threaded server with the SDK
fast path in front; on PostgreSQL the trait write commits asynchronously, and only it."""

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from webapp.extensions import db
from webapp.models import Identity
from webapp.services.platform import identities

THREADS = 6
EACH = 15


def _identify(base: str, key: str, traits: dict) -> int:
    body = {"identifier": "ada",
            "traits": [{"trait_key": k, "trait_value": v} for k, v in traits.items()]}
    request = urllib.request.Request(
        f"{base}/api/v1/identities/", data=json.dumps(body).encode(), method="POST",
        headers={"X-Environment-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status


def test_concurrent_identifies_keep_every_trait(live_server, platform):
    key = platform.development.client_key
    db.session.rollback()
    assert _identify(live_server, key, {"plan": "pro"}) == 200  # the documents are built

    def send(thread: int) -> list[int]:
        return [_identify(live_server, key, {f"t{thread}_{n}": n, "plan": "pro"})
                for n in range(EACH)]

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = [status for batch in pool.map(send, range(THREADS)) for status in batch]
    assert set(statuses) == {200}
    db.session.rollback()
    stored = db.session.scalar(select(Identity.traits).where(Identity.identifier == "ada"))
    assert stored == {"plan": "pro", **{f"t{t}_{n}": n for t in range(THREADS)
                                        for n in range(EACH)}}


@pytest.mark.postgresql_only
def test_trait_writes_turn_synchronous_commit_off_for_their_own_transaction(platform):
    """The statements identities.identify sends on PostgreSQL, run in a transaction to look."""
    environment_id = platform.development.id
    moment = datetime.now(UTC).replace(tzinfo=None)
    insert = identities._INSERT_POSTGRESQL.format(*["%s"] * 4)
    update = (identities._UPDATE + identities._ASYNCHRONOUS_COMMIT).format(*["%s"] * 4)
    with db.engine.connect() as conn:
        conn.exec_driver_sql("SET synchronous_commit = on")  # the tests' URL turns it off
        conn.commit()
        inserted = conn.exec_driver_sql(
            insert, (environment_id, "ada", '{"plan": "pro"}', moment)).rowcount
        assert inserted == 1
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        conn.commit()
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
        updated = conn.exec_driver_sql(
            update, ('{"plan": "free"}', environment_id, "ada", '{"plan": "pro"}')).rowcount
        assert updated == 1
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
        conn.commit()
        assert conn.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    db.session.rollback()
    assert db.session.scalar(select(Identity.traits)) == {"plan": "free"}


# (stored before, traits sent as (key, value, transient)): what is stored after, in its order,
# is what identities._merge makes of them, or what was stored when _merge's dicts are equal.
MERGES = [
    (None, [("a", 1, False), ("b", "x", False)]),
    (None, [("a", 1, True), ("a", None, False)]),
    ({"a": 1, "b": 2, "c": 3}, [("b", 20, False), ("d", 4, False)]),
    ({"a": 1, "b": 2, "c": 3}, [("b", None, False), ("b", 5, False)]),
    ({"a": 1, "b": 2}, [("a", None, False), ("x", 1, False), ("a", 2, False)]),
    ({"a": 1, "b": 2}, [("x", 1, False), ("a", None, False), ("a", 2, False), ("a", 3, False)]),
    ({"a": 1}, [("a", True, False)]),
    ({"a": True, "b": False}, [("a", 1.0, False), ("b", 0, False)]),
    ({"a": 1}, [("z", None, False)]),
    ({"a": 1, "b": 2}, [("a", None, False), ("a", 1, False)]),
    ({"a": 1}, [("t", 5, True), ("b", 2, False), ("a", 7, True)]),
    ({"a": 1, "b": 2}, [("a", None, False), ("b", None, False)]),
    ({"a": "1", "b": 1}, [("a", 1, False), ("b", "1", False)]),
    ({"é": "ü"}, [("ключ", "値 \"quoted\" \\", False), ("f", 0.1, False),
                  ("big", 12345678901234567890, False), ("é", 1e-7, False)]),
    ({"a": 1.5}, [("a", 1.5, False), ("b", 2, True)]),
]


@pytest.mark.parametrize(("before", "sent"), MERGES)
def test_identify_stores_what_merge_makes_in_its_order(platform, before, sent):
    environment_id = platform.development.id
    if before is not None:
        db.session.add(Identity(environment_id=environment_id, identifier="ada", traits=before))
        db.session.commit()
    effective, to_store = identities._merge(dict(before or {}), sent)
    unchanged = before is not None and to_store == before
    written_before = _row_version(environment_id)

    answer = identities.identify(environment_id, "ada", sent)

    assert list(answer.items()) == list(effective.items())
    _text, stored = identities._stored(environment_id, "ada")
    assert list(stored.items()) == list((before if unchanged else to_store).items())
    assert (_row_version(environment_id) == written_before) == unchanged  # no write if unchanged


def _row_version(environment_id: int) -> object:
    """What changes when the identity's row is written: its xmin on PostgreSQL, its traits'
    text on SQLite (every case above writes a different text when it writes)."""
    db.session.rollback()
    postgresql = db.engine.dialect.name == "postgresql"
    column = "CAST(xmin AS TEXT)" if postgresql else "traits"
    return db.session.execute(text(f"SELECT {column} FROM identity WHERE environment_id = "
                                   f":environment AND identifier = 'ada'"),
                              {"environment": environment_id}).scalar()
