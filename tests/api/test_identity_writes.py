"""What an identify stores: concurrent identifies of one identity lose none of each other's
traits (compare-and-set, then a merge under the lock), through a threaded server with the SDK
fast path in front; on PostgreSQL the trait write commits asynchronously, and only it."""

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

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
