"""`GET /api/v1/flags/` answered before Flask from this process's caches (webapp/sdk_fast.py):
the same status, headers and body as the Flask view, 304s by ETag, SDK metrics counted, and
a change seen by the very next read. On SQLite nothing is cached by key, so every read is
Flask's and the answers are compared all the same."""

import time

import pytest

from tests.api.conftest import set_state
from webapp.extensions import db
from webapp.metrics import SDK_REQUESTS
from webapp.services.platform import revisions, sdk_documents


@pytest.fixture
def flask_reads(app):
    """How many requests reached Flask (the fast path answers before any of its hooks)."""
    seen: list[str] = []
    app.before_request_funcs.setdefault(None, []).insert(0, lambda: seen.append("x") and None)
    return seen


def _listening() -> bool:
    cache = revisions.key_cache(db.engine)
    started = time.monotonic()
    while cache is not None and not cache.listening:
        assert time.monotonic() - started < 5, "the listener did not start"
        time.sleep(0.01)
    return cache is not None


def _count(code: str) -> float:
    return SDK_REQUESTS.labels("flags", code)._value.get()


def test_the_cached_answer_is_the_flask_answer(client, platform, flask_reads):
    key = platform.development.client_key
    postgres = _listening()
    first = client.get("/api/v1/flags/", headers={"X-Environment-Key": key})
    assert len(flask_reads) == 1  # the first read builds the caches, through Flask
    again = client.get("/api/v1/flags/", headers={"X-Environment-Key": key})
    assert len(flask_reads) == (1 if postgres else 2)
    assert again.status_code == first.status_code == 200
    assert list(again.headers) == list(first.headers)
    assert again.data == first.data
    assert "Set-Cookie" not in again.headers


def test_conditional_reads_and_cors_match_flask(client, platform, flask_reads):
    key = platform.development.client_key
    postgres = _listening()
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
    if postgres:
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
