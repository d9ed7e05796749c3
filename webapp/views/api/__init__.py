"""The JSON APIs under /api/v1: the SDK API (Flagsmith's wire format, `X-Environment-Key`) and
the admin REST API (`Authorization: Api-Key` / `Token`). One module per resource.

Key and token authentication only, never the session cookie, so the blueprint is exempt from
CSRF. Errors are JSON `{"detail": ...}` (webapp/errors.py does that for /api/ paths).
"""

from flask import Blueprint

from webapp.extensions import csrf
from webapp.views.api import cors

bp = Blueprint("api", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


bp.after_request(cors.add_headers)


from webapp.views.api import (  # noqa: E402,F401
    audit,
    auth,
    change_requests,
    environments,
    features,
    featurestates,
    integrations,
    openapi,
    projects,
    release_pipelines,
    sdk,  # noqa: E402,F401  (routes register on bp)
    segments,
    webhooks,
)
