"""Cross-origin access to the API.

The SDK endpoints answer any origin, as Flagsmith's do: browsers read flags with the client key,
which is public, and no cookie is ever involved (`Access-Control-Allow-Credentials` is never
sent). The admin API acts with organisation keys and personal tokens, so it stays closed to other
origins unless `CORS_ADMIN_ORIGINS` (comma-separated origins) names the page's origin.
"""

from flask import Flask, Response, current_app, request

# The endpoints the SDKs call; every other endpoint under /api/v1 is the admin API.
SDK_ENDPOINTS = frozenset({
    "api.flags", "api.identify", "api.identity", "api.environment_document",
    "api.analytics_flags",
})
# What Flagsmith's SDKs send (the JS SDK's fetch, the server SDKs' requests, tracing headers of
# the usual browser monitoring tools) plus what a conditional read sends.
SDK_HEADERS = ("Accept, Content-Type, X-Environment-Key, Flagsmith-SDK-User-Agent, "
               "Flagsmith-Application-Name, Flagsmith-Application-Version, If-None-Match, "
               "Cache-Control, X-Requested-With, sentry-trace, baggage, traceparent, tracestate")
ADMIN_HEADERS = "Accept, Authorization, Content-Type, If-None-Match, X-Requested-With"
EXPOSED = "ETag, X-Flagsmith-Document-Updated-At"
# What every SDK answer carries (whatever the origin): webapp/sdk_fast.py sends the same.
SDK_ANSWER = [("Access-Control-Allow-Origin", "*"), ("Access-Control-Expose-Headers", EXPOSED)]
# Browsers cap this (Chromium: 2 h); one preflight per endpoint per day or two is plenty.
PREFLIGHT_MAX_AGE = "86400"


def admin_origins(app: Flask) -> frozenset[str]:
    configured = app.config.get("CORS_ADMIN_ORIGINS") or ""
    if isinstance(configured, str):
        configured = configured.split(",")
    return frozenset(origin.strip().rstrip("/") for origin in configured if origin.strip())


def add_headers(response: Response) -> Response:
    """The CORS answer for this API request (nothing for a same-origin or refused origin)."""
    origin = request.headers.get("Origin")
    if request.endpoint in SDK_ENDPOINTS:
        allow_origin, allowed_headers = "*", SDK_HEADERS
    elif origin and origin in admin_origins(current_app):
        allow_origin, allowed_headers = origin, ADMIN_HEADERS
        response.vary.add("Origin")
    else:
        return response
    response.headers["Access-Control-Allow-Origin"] = allow_origin
    response.headers["Access-Control-Expose-Headers"] = EXPOSED
    if request.method == "OPTIONS":
        response.headers["Access-Control-Allow-Methods"] = response.headers.get(
            "Allow", "GET, POST, OPTIONS")
        response.headers["Access-Control-Allow-Headers"] = allowed_headers
        response.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return response
