"""A bare WSGI app that answers the same bytes as Railyard's SDK API (the ceiling of the same
server set-up): bench/sdk.py serves it under the same gunicorn command and compares.

BARE_FLAGS and BARE_IDENTITY name files holding the bodies that `GET /api/v1/flags/` and
`POST /api/v1/identities/` answered.
"""

import os

_FLAGS = open(os.environ["BARE_FLAGS"], "rb").read()  # noqa: SIM115 (read once at import)
_IDENTITY = open(os.environ["BARE_IDENTITY"], "rb").read()  # noqa: SIM115


def app(environ, start_response):
    if environ["REQUEST_METHOD"] == "POST":
        environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        body, extra = _IDENTITY, []
    else:
        body, extra = _FLAGS, [("ETag", '"1-2-abcdef0123"'), ("Cache-Control", "no-cache"),
                               ("Vary", "X-Environment-Key")]
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body))), *extra])
    return [body]
