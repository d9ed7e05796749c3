"""A busy day on PostgreSQL: many writers at once through a real threaded server answer no 5xx.

Every write that bumps several environments' revisions (a flag created, a segment saved) takes
the environment rows in one order, and a unit of work that still loses a deadlock or a
serialization race is retried once. On SQLite the same load runs through its write lock.
"""

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, func, select, text

from webapp.extensions import db
from webapp.models import Environment, Feature, FeatureState

CREATES = 200
THREADS = 8


def _post(url: str, body: dict, key: str) -> int:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_flags_created_from_many_threads_all_land(live_server, make, org_key):
    # Eight environments: each create bumps all of them, so two creates that meet in
    # different orders wait on each other (before the fix, a near certainty at this load).
    project = make.project("Busy", environments=tuple(f"Env {n}" for n in range(8)))
    environments = db.session.scalar(
        select(func.count()).select_from(Environment).where(Environment.project_id == project.id))
    revisions_before = db.session.scalar(
        select(func.sum(Environment.revision)).where(Environment.project_id == project.id))
    db.session.rollback()
    url = f"{live_server}/api/v1/projects/{project.id}/features/"

    def create(index: int) -> int:
        return _post(url, {"name": f"load_{index}"}, org_key)

    with ThreadPoolExecutor(THREADS) as pool:
        statuses = list(pool.map(create, range(CREATES)))

    assert sorted(set(statuses)) == [201], {s: statuses.count(s) for s in set(statuses)}
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Feature)
                             .where(Feature.project_id == project.id)) == CREATES
    assert db.session.scalar(select(func.count()).select_from(FeatureState)) == (
        CREATES * environments)
    # Every create bumped every environment once: no revision lost.
    assert db.session.scalar(
        select(func.sum(Environment.revision)).where(Environment.project_id == project.id)
    ) == revisions_before + CREATES * environments


@pytest.mark.postgresql_only
def test_a_request_that_loses_a_deadlock_is_run_again_once(live_server, make, org_key,
                                                           database_url):
    """Another writer holds the second environment and then asks for the first, which the
    request holds: PostgreSQL aborts the request (its deadlock check fires first), and the
    request runs again from the start once the other writer is through."""
    project = make.project("Busy")
    first, second = (env.id for env in make.environments(project)[:2])
    of_project = select(Environment.id, Environment.revision).where(
        Environment.project_id == project.id)
    revisions = dict(db.session.execute(of_project).all())
    db.session.rollback()
    other = create_engine(database_url)
    with other.connect() as conn:
        conn.execute(text("SET deadlock_timeout = '20s'"))  # so the request is the one aborted
        conn.execute(text("SELECT id FROM environment WHERE id = :id FOR NO KEY UPDATE"),
                     {"id": second})
        with ThreadPoolExecutor(1) as pool:
            status = pool.submit(_post, f"{live_server}/api/v1/projects/{project.id}/features/",
                                 {"name": "contended"}, org_key)
            _wait_for_a_lock_wait(conn)
            conn.execute(text("SELECT id FROM environment WHERE id = :id FOR NO KEY UPDATE"),
                         {"id": first})
            conn.commit()
            assert status.result() == 201
    other.dispose()
    db.session.rollback()
    assert db.session.scalars(select(Feature.name)).all() == ["contended"]
    after = dict(db.session.execute(of_project).all())
    assert after == {env_id: revision + 1 for env_id, revision in revisions.items()}


def _wait_for_a_lock_wait(conn) -> None:
    """Until a backend of this database waits for a row lock (the request, at its commit)."""
    for _ in range(1000):
        waiting = conn.execute(text(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()")).scalar()
        if waiting:
            return
        time.sleep(0.01)
    raise AssertionError("the request never waited for the lock")
