"""Admin API: `POST /auth/login/` — a person's token for scripts and tools (Flagsmith's path)."""

from flask import request
from werkzeug.exceptions import TooManyRequests

from webapp import throttle
from webapp.services.platform import api_auth
from webapp.views.api import bp
from webapp.views.api.common import body, operation
from webapp.views.api.schemas import LoginSchema, LoginTokenSchema


@bp.post("/auth/login/")
@operation("Sign in with email and password: a new personal token (`Authorization: Token`)",
           "auth", body=LoginSchema, response=LoginTokenSchema, auth="none",
           errors=(400, 422, 429))
def login():
    """Throttled as the sign-in form is: per account and per client address."""
    data = body(LoginSchema)
    checks = throttle.sign_in_checks(data["email"], request.remote_addr or "")
    wait = throttle.retry_after(*checks)
    if wait:
        raise TooManyRequests(
            f"Too many failed sign-ins: try again in {throttle.in_words(wait)}.", retry_after=wait)
    try:
        key = api_auth.login(data["email"], data["password"])
    except api_auth.BadCredentials:
        throttle.note_failure(*checks)
        raise
    throttle.forget(*checks[0])
    return {"key": key}
