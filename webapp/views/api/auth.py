"""Admin API: `POST /auth/login/` — a person's token for scripts and tools (Flagsmith's path)."""

from webapp.services import api_auth
from webapp.views.api import bp
from webapp.views.api.common import body, operation
from webapp.views.api.schemas import LoginSchema, LoginTokenSchema


@bp.post("/auth/login/")
@operation("Sign in with email and password: a new personal token (`Authorization: Token`)",
           "auth", body=LoginSchema, response=LoginTokenSchema, auth="none",
           errors=(400, 422))
def login():
    data = body(LoginSchema)
    return {"key": api_auth.login(data["email"], data["password"])}
