"""The SDKs' two busiest requests answered before Flask, from this process's caches.

`GET /api/v1/flags/` and `POST /api/v1/identities/` are what SDKs do most, and their answers
are bytes serialized once per environment revision (plus, for an identify, the evaluation and
the trait write). Past those, what was left of their cost was Flask's own per-request work
(request context, routing, hooks, the response object): two thirds of a flags read's CPU and a
third of an identify's. This WSGI middleware answers their plain forms, with exactly the Flask
view's status, headers and body, when the environment's documents are built already:

- no query string, a key header, the key's environment at its current revision (from this
  process's key cache, else one indexed read: sdk_documents.find_environment, as the view
  reads it, so never an older revision than the view would see) and that revision's documents
  in this process (sdk_documents.cached);
- flags: a GET without a body;
- identities: a POST of a JSON object (`Content-Type: application/json`) that input_guard
  would let through and the identify checks accept; the identify itself is the view's service
  call (identities.identify).

Anything else (a first read, `?feature=`, a missing or unknown key, HEAD, a body the checks
refuse, any exception) goes to Flask as before, which answers it, errors included, and fills
the caches. SDK metrics count these requests the same. tests/api/test_sdk_fast.py compares both
answers.
"""

import io
import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.http import parse_etags

from webapp import input_guard
from webapp.extensions import db
from webapp.metrics import SDK_LATENCY, SDK_REQUESTS
from webapp.security import HEADERS as SECURITY_HEADERS
from webapp.services.errors import BadRequest
from webapp.services.platform import identities, revisions, sdk_documents

FLAGS_PATH = "/api/v1/flags/"
IDENTITIES_PATH = "/api/v1/identities/"
UPDATED_AT = "X-Flagsmith-Document-Updated-At"
# An identify body is a few hundred bytes; a larger one is left to Flask.
MAX_IDENTIFY_BODY = 64 * 1024

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SdkFastPath:
    """WSGI middleware in front of the Flask app (see the module's docstring)."""

    def __init__(self, app: Flask, wsgi_app: WSGIApp, cors: list[tuple[str, str]]):
        self._app = app
        self._next = wsgi_app
        # What the Flask answer carries after the view's own headers: CORS (the SDK endpoints
        # answer any origin; the app factory passes the API's headers, nothing here imports the
        # views) then the security headers, in that order.
        self._trailing = [*cors, *SECURITY_HEADERS.items()]
        with app.app_context():
            self._engine = db.engine
        # (pid, this process's key cache)
        self._cache: tuple[int, revisions.KeyCache | revisions.RecentKeyCache | None] | None = None
        # The metrics' children, looked up once (labels() costs a lock).
        self._latency = {name: SDK_LATENCY.labels(name) for name in ("flags", "identify")}
        self._counters: dict[tuple[str, str], Any] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse
                 ) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ.get("REQUEST_METHOD")
        if (path == FLAGS_PATH and method == "GET" and not environ.get("QUERY_STRING")
                and "HTTP_TRANSFER_ENCODING" not in environ
                and environ.get("CONTENT_LENGTH") in (None, "", "0")):
            return self._flags(environ, start_response)
        if (path == IDENTITIES_PATH and method == "POST" and not environ.get("QUERY_STRING")
                and "HTTP_TRANSFER_ENCODING" not in environ):
            return self._identify(environ, start_response)
        return self._next(environ, start_response)

    def _flags(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        found = self._documents(environ)
        if found is None:
            return self._next(environ, start_response)
        docs = found[1]
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
        return self._answer("flags", started, start_response, status, headers, body)

    def _identify(self, environ: dict[str, Any], start_response: StartResponse
                  ) -> Iterable[bytes]:
        started = time.perf_counter()
        payload = _json_object(environ)
        answer = None
        if payload is not None:
            with self._app.app_context():
                answer = self._identify_answer(environ, payload)
        if answer is None:
            return self._next(environ, start_response)
        docs, body = answer
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                   (UPDATED_AT, f"{docs.updated_at:.6f}")]
        return self._answer("identify", started, start_response, "200 OK", headers, body)

    def _identify_answer(self, environ: dict[str, Any], payload: dict[str, Any]
                         ) -> "tuple[sdk_documents.Documents, bytes] | None":
        """The documents and the body the view would answer, or None to leave it to Flask."""
        found = self._documents(environ)
        if found is None:
            return None
        ref, docs = found
        try:
            traits = identities.check_traits(payload.get("traits"))
            identifier, transient = identities.resolve_identifier(
                payload.get("identifier"), traits, transient=payload.get("transient") is True)
            effective = identities.identify(ref.id, identifier, traits,
                                            transient=transient)
        except BadRequest:
            return None  # Flask answers the 400
        except Exception:  # noqa: BLE001
            # A database error (or a bug): Flask runs the request again and answers it its way
            # (retried once, logged, a JSON 500). A write already made is merged again: same
            # traits, same answer.
            return None
        return docs, sdk_documents.identity_json(docs, identifier, effective)

    def _documents(self, environ: dict[str, Any]
                   ) -> "tuple[sdk_documents.EnvironmentRef, sdk_documents.Documents] | None":
        """The key's environment and its documents at the current revision, if built already:
        from the key cache, else as the view finds it (sdk_documents.find_environment)."""
        key = environ.get("HTTP_X_ENVIRONMENT_KEY")
        if not key:
            return None
        cache = self._key_cache()
        try:
            ref = None if cache is None else cache.peek(key)
            if ref is None:
                with self._app.app_context():
                    ref = sdk_documents.find_environment(key)
        except Exception:  # noqa: BLE001 (a database error: Flask answers it its way)
            return None
        if ref is None:
            return None
        docs = sdk_documents.cached(ref)
        return None if docs is None else (ref, docs)

    def _key_cache(self) -> "revisions.KeyCache | revisions.RecentKeyCache | None":
        """This process's key cache (a forked worker has its own: keyed by pid), if any."""
        pid = os.getpid()
        if self._cache is None or self._cache[0] != pid:
            self._cache = (pid, revisions.key_cache(self._engine))
        return self._cache[1]

    def _answer(self, endpoint: str, started: float, start_response: StartResponse,
                status: str, headers: list[tuple[str, str]], body: bytes) -> list[bytes]:
        start_response(status, headers + self._trailing)
        self._latency[endpoint].observe(time.perf_counter() - started)
        counter = self._counters.get((endpoint, status))
        if counter is None:
            counter = self._counters[(endpoint, status)] = SDK_REQUESTS.labels(
                endpoint, status[:3])
        counter.inc()
        return [body] if body else []


def _json_object(environ: dict[str, Any]) -> dict[str, Any] | None:
    """The request's JSON object, or None when Flask should read the body (it still can: what
    was read is put back as the input stream)."""
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    try:
        length = int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None
    if mimetype != "application/json" or not 0 < length <= MAX_IDENTIFY_BODY:
        return None
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(payload, dict) or input_guard.json_body_refusal(body, payload):
        return None
    return payload


def install(app: Flask, cors: list[tuple[str, str]]) -> None:
    """Put the fast path in front of the app (last, so it is the outermost WSGI layer).
    `cors`: the CORS headers of an SDK answer (webapp/views/api/cors.py)."""
    app.wsgi_app = SdkFastPath(app, app.wsgi_app, cors)  # type: ignore[method-assign]
