"""The signed-in user's profile: personal API tokens (`Authorization: Token <token>`),
created (shown once) and revoked. A dashboard page, so a blueprint of its own with CSRF."""

from flask import Blueprint, url_for
from flask_login import current_user, login_required

from webapp.forms.tokens import TokenForm
from webapp.htmx import location, render, wants_fragment
from webapp.services.errors import Invalid
from webapp.services.platform import api_auth, api_keys
from webapp.views.context import actor

bp = Blueprint("profile", __name__, url_prefix="/profile")


def _page(status: int = 200, block: str = "tokens", **context):
    context.setdefault("form", TokenForm())
    return render("api/profile.html", block, status=status,
                  tokens=api_auth.tokens_of(current_user), **context)


@bp.get("")
@login_required
def index():
    return _page()


@bp.post("/tokens")
@login_required
def create_token():
    form = TokenForm()
    if form.validate_on_submit():
        try:
            row, secret = api_keys.create_user_token(current_user, form.name.data, actor())
        except Invalid as error:
            for field, messages in error.field_errors.items():
                getattr(form, field).errors.extend(messages)
        else:
            return _page(created=row, secret=secret, form=TokenForm(formdata=None))
    return _page(status=422, form=form)


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    api_auth.revoke_token(current_user, token_id, actor())
    if wants_fragment():
        return _page()
    return location(url_for("profile.index"))
