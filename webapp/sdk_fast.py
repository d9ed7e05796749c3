"""`GET /api/v1/flags/` answered from this process's caches, before Flask.

The flags read is what SDKs do most, and its answer is bytes serialized once per revision. Past
the key lookup (cached per process on PostgreSQL) and the document cache, what was left of its
cost was Flask's own per-request work (request context, routing, hooks, the response object):
about two thirds of the worker's CPU for a 28 KB answer. This WSGI middleware answers the
plain form of that read, with exactly the Flask view's status, headers and body, when both
caches already hold the answer:

- `GET /api/v1/flags/`, no query string, no body, a key header;
- the key is in the key cache (PostgreSQL, listener connected: revisions.KeyCache.peek);
- the documents of that environment revision are built (sdk_documents.cached).

Anything else (a first read, SQLite, `?feature=`, a missing or unknown key, HEAD, a body, a
change since the last read) goes to Flask as before, and that request fills the caches. SDK
metrics count these reads the same. tests/api/test_sdk_fast.py compares both answers.
"""

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.http import parse_etags

from webapp.extensions import db
from webapp.metrics import SDK_LATENCY, SDK_REQUESTS
from webapp.security import HEADERS as SECURITY_HEADERS
from webapp.services.platform import revisions, sdk_documents

FLAGS_PATH = "/api/v1/flags/"
UPDATED_AT = "X-Flagsmith-Document-Updated-At"

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SdkFastPath:
    """WSGI middleware in front of the Flask app (see the module's docstring)."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp, cors: list[tuple[str, str]]):
        self._next = wsgi_app
        # What the Flask answer carries after the view's own headers: CORS (the SDK endpoints
        # answer any origin; the app factory passes the API's headers, nothing here imports the
        # views) then the security headers, in that order.
        self._trailing = [*cors, *SECURITY_HEADERS.items()]
        with app.app_context():
            self._engine = db.engine
        self._cache: tuple[int, revisions.KeyCache | None] | None = None  # (pid, cache)
        # The metrics' children for this endpoint, looked up once (labels() costs a lock).
        self._latency = SDK_LATENCY.labels("flags")
        self._counters: dict[str, Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        if (environ.get("PATH_INFO") != FLAGS_PATH or environ.get("REQUEST_METHOD") != "GET"
                or environ.get("QUERY_STRING") or "HTTP_TRANSFER_ENCODING" in environ
                or environ.get("CONTENT_LENGTH") not in (None, "", "0")):
            return self._next(environ, start_response)
        started = time.perf_counter()
        key = environ.get("HTTP_X_ENVIRONMENT_KEY")
        cache = self._key_cache() if key else None
        ref = cache.peek(key) if cache is not None and key else None
        docs = sdk_documents.cached(ref) if ref is not None else None
        if docs is None:
            return self._next(environ, start_response)
        headers = [("ETag", f'"{docs.etag}"'), ("Last-Modified", docs.last_modified),
                   ("Cache-Control", "no-cache"), ("Vary", "X-Environment-Key"),
                   (UPDATED_AT, f"{docs.updated_at:.6f}")]
        sent = environ.get("HTTP_IF_NONE_MATCH")
        if sent and parse_etags(sent).contains(docs.etag):
            # As werkzeug answers a 304: no entity headers (Last-Modified, Content-Type/Length).
            status, body = "304 NOT MODIFIED", b""
            headers = [h for h in headers if h[0] != "Last-Modified"]
        else:
            status, body = "200 OK", docs.flags_json
            headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(status, headers + self._trailing)
        self._latency.observe(time.perf_counter() - started)
        counter = self._counters.get(status)
        if counter is None:
            counter = self._counters[status] = SDK_REQUESTS.labels("flags", status[:3])
        counter.inc()
        return [body] if body else []

    def _key_cache(self) -> "revisions.KeyCache | None":
        """This process's key cache (a forked worker has its own: keyed by pid)."""
        pid = os.getpid()
        if self._cache is None or self._cache[0] != pid:
            self._cache = (pid, revisions.key_cache(self._engine))
        return self._cache[1]


def install(app: Flask, cors: list[tuple[str, str]]) -> None:
    """Put the fast path in front of the app (last, so it is the outermost WSGI layer).
    `cors`: the CORS headers of an SDK answer (webapp/views/api/cors.py)."""
    app.wsgi_app = SdkFastPath(app, app.wsgi_app, cors)  # type: ignore[method-assign]
