"""`GET /api/v1/flags/` and `POST /api/v1/identities/` answered before Flask from this
process's caches (webapp/sdk_fast.py): the same status, headers and body as the Flask view (and,
for an identify, the same stored traits), 304s by ETag, SDK metrics counted, a change seen by the
very next read, and everything the fast path does not take answered by Flask. On SQLite the key's
revision is read per request, so a revision another connection moved is never served stale."""

import sqlite3
import time

import pytest
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError

from tests.api.conftest import set_state
from webapp.extensions import db
from webapp.metrics import SDK_REQUESTS
from webapp.models import Identity
from webapp.services.platform import identities, revisions, sdk_documents


@pytest.fixture
def flask_reads(app):
    """How many requests reached Flask (the fast path answers before any of its hooks)."""
    seen: list[str] = []
    app.before_request_funcs.setdefault(None, []).insert(0, lambda: seen.append("x") and None)
    return seen


def _listening() -> None:
    """On PostgreSQL, until this process's listener listens (before, no key is cached)."""
    cache = revisions.key_cache(db.engine)
    started = time.monotonic()
    while cache is not None and not cache.listening:
        assert time.monotonic() - started < 5, "the listener did not start"
        time.sleep(0.01)


def _seen_within(seen, seconds: float, since: float | None = None) -> None:
    """Polls seen() until true; fails if a poll that began `seconds` after now (or `since`) or
    later still did not see it (a slow poll that began in time may answer late)."""
    started = time.monotonic() if since is None else since
    while True:
        asked = time.monotonic()
        if seen():
            return
        assert asked - started < seconds, f"not seen within {seconds} s"
        time.sleep(0.005)


def _count(code: str, endpoint: str = "flags") -> float:
    return SDK_REQUESTS.labels(endpoint, code)._value.get()


def test_the_cached_answer_is_the_flask_answer(client, platform, flask_reads):
    key = platform.development.client_key
    _listening()
    first = client.get("/api/v1/flags/", headers={"X-Environment-Key": key})
    assert len(flask_reads) == 1  # the first read builds the caches, through Flask
    again = client.get("/api/v1/flags/", headers={"X-Environment-Key": key})
    assert len(flask_reads) == 1
    assert again.status_code == first.status_code == 200
    assert list(again.headers) == list(first.headers)
    assert again.data == first.data
    assert "Set-Cookie" not in again.headers


def test_conditional_reads_and_cors_match_flask(client, platform, flask_reads):
    key = platform.development.client_key
    _listening()
    etag = client.get("/api/v1/flags/", headers={"X-Environment-Key": key}).headers["ETag"]
    headers = {"X-Environment-Key": key, "If-None-Match": f'W/"x", {etag}',
               "Origin": "https://shop.example"}
    before = _count("304")
    cached = client.get("/api/v1/flags/", headers=headers)
    assert cached.status_code == 304 and cached.data == b""
    assert _count("304") == before + 1
    reads = len(flask_reads)
    sdk_documents.clear_cache()  # the same request once more, now through Flask
    through_flask = client.get("/api/v1/flags/", headers=headers)
    assert len(flask_reads) == reads + 1
    assert list(through_flask.headers) == list(cached.headers)
    assert through_flask.status_code == 304
    weak_only = client.get("/api/v1/flags/", headers={
        "X-Environment-Key": key, "If-None-Match": f"W/{etag}"})
    assert weak_only.status_code == 200  # ETags are compared strongly, as Flask does
    assert len(flask_reads) == reads + 1


def test_a_change_is_seen_by_the_next_read(client, platform):
    key = platform.development.client_key
    _listening()

    def checkout() -> bool:
        body = client.get("/api/v1/flags/", headers={"X-Environment-Key": key}).get_json()
        return {f["feature"]["name"]: f["enabled"] for f in body}["new_checkout"]

    assert not checkout()
    assert not checkout()
    set_state(platform.development, platform.checkout, enabled=True)
    assert checkout()


@pytest.mark.parametrize("path,sent", [
    ("/api/v1/flags/?feature=banner_text", "key"),  # a query string: Flask's view
    ("/api/v1/flags/", "nope"),  # unknown key: Flask's 401
    ("/api/v1/flags/", None),  # no key: Flask's 401
])
def test_other_reads_are_flasks(client, platform, flask_reads, path, sent):
    key = platform.development.client_key
    _listening()
    client.get("/api/v1/flags/", headers={"X-Environment-Key": key})
    reads = len(flask_reads)
    headers = {} if sent is None else {"X-Environment-Key": key if sent == "key" else sent}
    response = client.get(path, headers=headers)
    assert len(flask_reads) == reads + 1
    assert response.status_code == (200 if "feature" in path else 401)


@pytest.mark.sqlite_only
def test_sqlite_a_revision_moved_by_another_connection_is_served_within_the_bound(
        app, client, platform, flask_reads, monkeypatch):
    """No notification on SQLite: a key's answer is kept for revisions.SQLITE_KEY_SECONDS, so a
    change another process committed (here: a bare connection to the file) shows within it."""
    key = {"X-Environment-Key": platform.development.client_key}
    etag = client.get("/api/v1/flags/", headers=key).headers["ETag"]
    monkeypatch.setattr(revisions, "SQLITE_KEY_SECONDS", 3600.0)
    client.get("/api/v1/flags/", headers=key)
    reads = len(flask_reads)
    assert reads == 1  # the second read was the fast path's
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as other:
        other.execute("UPDATE environment SET revision = revision + 1 WHERE id = ?",
                      (platform.development.id,))
    committed = time.monotonic()
    assert client.get("/api/v1/flags/", headers=key).headers["ETag"] == etag  # the kept answer
    monkeypatch.undo()
    _seen_within(lambda: client.get("/api/v1/flags/", headers=key).headers["ETag"] != etag,
                 revisions.SQLITE_KEY_SECONDS + 0.05, since=committed)
    moved = client.get("/api/v1/flags/", headers=key)
    assert len(flask_reads) == reads + 1  # the new revision's documents, built by Flask
    again = client.get("/api/v1/flags/", headers=key)
    assert again.headers["ETag"] == moved.headers["ETag"]
    assert len(flask_reads) == reads + 1


@pytest.mark.sqlite_only
def test_sqlite_a_flag_changed_by_another_connection_is_seen_within_the_bound(app, client,
                                                                              platform):
    key = platform.development.client_key

    def checkout() -> bool:
        body = client.get("/api/v1/flags/", headers={"X-Environment-Key": key}).get_json()
        return {f["feature"]["name"]: f["enabled"] for f in body}["new_checkout"]

    assert not checkout()
    assert not checkout()
    set_state(platform.development, platform.checkout, enabled=True)  # the app's own commit
    assert checkout()
    path = app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as other:  # as a change in another process would
        other.execute("UPDATE feature_state SET enabled = 0 WHERE environment_id = ? "
                      "AND feature_id = ?", (platform.development.id, platform.checkout.id))
        other.execute("UPDATE environment SET revision = revision + 1 WHERE id = ?",
                      (platform.development.id,))
    _seen_within(lambda: not checkout(), revisions.SQLITE_KEY_SECONDS + 0.05)


# --- POST /api/v1/identities/ ---------------------------------------------------------------

# One identity's identifies, in order: created, changed, unchanged (no write), a trait removed
# and a transient one, a transient identify, one without identifier (transient), a bare body.
IDENTIFIES = [
    {"identifier": "ada", "traits": [{"trait_key": "plan", "trait_value": "pro"},
                                     {"trait_key": "age", "trait_value": 31}]},
    {"identifier": "ada", "traits": [{"trait_key": "country", "trait_value": "FR"},
                                     {"trait_key": "age", "trait_value": 32.5}]},
    {"identifier": "ada", "traits": [{"trait_key": "country", "trait_value": "FR"}]},
    {"identifier": "ada", "traits": [{"trait_key": "plan", "trait_value": None},
                                     {"trait_key": "vip", "trait_value": True,
                                      "transient": True}]},
    {"identifier": "ada", "traits": [{"trait_key": "plan", "trait_value": "pro"}],
     "transient": True},
    {"traits": [{"trait_key": "plan", "trait_value": "pro"}]},
    {"identifier": "ada"},
]


def _identify(client, body, **kwargs):
    kwargs.setdefault("json", body)
    return client.post("/api/v1/identities/", **kwargs)


def _stored() -> dict:
    db.session.rollback()  # end the test's read snapshot (SQLite WAL) to see what requests wrote
    return dict(db.session.execute(select(Identity.identifier, Identity.traits)).all())


def test_identify_answers_and_writes_are_flasks(client, platform, flask_reads):
    key = {"X-Environment-Key": platform.development.client_key}
    _listening()
    client.get("/api/v1/flags/", headers=key)  # builds the documents
    fast = []
    for body in IDENTIFIES:
        reads = len(flask_reads)
        response = _identify(client, body, headers=key)
        assert len(flask_reads) == reads, body  # answered before Flask
        fast.append((response.status_code, list(response.headers), response.data, _stored()))
    db.session.execute(delete(Identity))
    db.session.commit()
    through_flask = []
    for body in IDENTIFIES:
        sdk_documents.clear_cache()
        reads = len(flask_reads)
        response = _identify(client, body, headers=key)
        assert len(flask_reads) == reads + 1
        through_flask.append((response.status_code, list(response.headers), response.data,
                              _stored()))
    assert fast == through_flask
    assert fast[-1][3] == {"ada": {"age": 32.5, "country": "FR"}}


def test_identify_sees_a_change_at_once_and_counts_its_metrics(client, platform, flask_reads):
    key = {"X-Environment-Key": platform.development.client_key}
    _listening()
    body = {"identifier": "bob", "traits": [{"trait_key": "plan", "trait_value": "free"}]}
    _identify(client, body, headers=key)
    before = _count("200", "identify")
    reads = len(flask_reads)

    def checkout() -> bool:
        flags = _identify(client, body, headers=key).get_json()["flags"]
        return {f["feature"]["name"]: f["enabled"] for f in flags}["new_checkout"]

    assert not checkout()
    assert len(flask_reads) == reads and _count("200", "identify") == before + 1
    db.session.rollback()  # the test's read snapshot predates bob's write (SQLite WAL)
    set_state(platform.development, platform.checkout, enabled=True)
    assert checkout()


@pytest.mark.parametrize("data,content_type,status", [
    (b'{"identifier": "a", "traits": "x"}', "application/json", 400),  # the view refuses
    (b'{"identifier": "a\\u0000"}', "application/json", 400),  # input_guard refuses (NUL)
    (b'{"identifier": "a"', "application/json", 400),  # not JSON
    (b'["a"]', "application/json", 400),  # not an object
    (b'{"identifier": "a"}', "text/plain", 400),  # not sent as JSON
    (b'{"identifier": "a"}', "application/json; charset=utf-8", 200),  # fast: charset is fine
])
def test_identify_bodies_the_fast_path_leaves_to_flask(client, platform, flask_reads, data,
                                                       content_type, status):
    key = {"X-Environment-Key": platform.development.client_key}
    _listening()
    client.get("/api/v1/flags/", headers=key)
    reads = len(flask_reads)
    response = _identify(client, None, json=None, data=data, content_type=content_type,
                         headers=key)
    assert response.status_code == status
    assert len(flask_reads) == reads + (status != 200)
    if status != 200:
        assert response.get_json()["detail"]


@pytest.mark.parametrize("sent", ["nope", None])
def test_identify_without_a_known_key_is_flasks(client, platform, flask_reads, sent):
    _listening()
    client.get("/api/v1/flags/", headers={"X-Environment-Key": platform.development.client_key})
    reads = len(flask_reads)
    response = _identify(client, IDENTIFIES[0],
                         headers={} if sent is None else {"X-Environment-Key": sent})
    assert response.status_code == 401 and len(flask_reads) == reads + 1


def test_identify_after_a_database_error_is_flasks(client, platform, flask_reads, monkeypatch):
    """The fast path leaves a failed write to Flask, which tries again and answers its way."""
    key = {"X-Environment-Key": platform.development.client_key}
    _listening()
    client.get("/api/v1/flags/", headers=key)
    stored, failures = identities._stored, []

    def failing_once(*args):
        if not failures:
            failures.append(1)
            raise OperationalError("SELECT", {}, Exception("connection lost"))
        return stored(*args)

    monkeypatch.setattr(identities, "_stored", failing_once)
    reads = len(flask_reads)
    response = _identify(client, IDENTIFIES[0], headers=key)
    assert response.status_code == 200 and failures and len(flask_reads) == reads + 1
    assert _stored() == {"ada": {"plan": "pro", "age": 31}}


@pytest.mark.postgresql_only
def test_identify_after_its_connection_broke_is_answered_on_a_new_one(client, platform,
                                                                      flask_reads):
    """The thread's own PostgreSQL connection (sdk_documents._own_postgresql_connection), cut
    by PostgreSQL: the fast path leaves that request to Flask, which reads on a new one."""
    key = {"X-Environment-Key": platform.development.client_key}
    _listening()
    client.get("/api/v1/flags/", headers=key)
    assert _identify(client, IDENTIFIES[0], headers=key).status_code == 200
    held = sdk_documents._kept.held
    assert held is not None
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT pg_terminate_backend(%s)",
                                    (held[1].info.backend_pid,)).scalar()
    reads = len(flask_reads)
    response = _identify(client, IDENTIFIES[1], headers=key)
    assert response.status_code == 200 and len(flask_reads) == reads + 1
    assert _stored() == {"ada": {"plan": "pro", "age": 32.5, "country": "FR"}}
    assert sdk_documents._kept.held[1] is not held[1]


def test_a_flags_read_after_a_database_error_is_flasks(client, platform, flask_reads,
                                                       monkeypatch):
    key = {"X-Environment-Key": platform.development.client_key}
    _listening()
    client.get("/api/v1/flags/", headers=key)
    failures: list[int] = []

    def failing_once(lookup):
        def failing(*args):
            if not failures:
                failures.append(1)
                raise OperationalError("SELECT", {}, Exception("connection lost"))
            return lookup(*args)
        return failing

    # The key's lookup: the key cache (SQLite's or PostgreSQL's), else a read.
    monkeypatch.setattr(sdk_documents, "find_environment",
                        failing_once(sdk_documents.find_environment))
    for cache in (revisions.KeyCache, revisions.RecentKeyCache):
        monkeypatch.setattr(cache, "peek", failing_once(cache.peek))
    reads = len(flask_reads)
    response = client.get("/api/v1/flags/", headers=key)
    assert response.status_code == 200 and failures and len(flask_reads) == reads + 1
