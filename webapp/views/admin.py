"""Site administration: the users of this Railyard (site admins only)."""

from flask import Blueprint, abort, redirect, url_for
from flask_login import current_user, login_required
from sqlalchemy import func, select

from webapp.extensions import db
from webapp.forms.admin import UserForm
from webapp.htmx import render, wants_fragment
from webapp.models import User
from webapp.services.errors import Conflict, Invalid
from webapp.services.platform import users as accounts
from webapp.views.context import actor

bp = Blueprint("admin", __name__)


def _site_admin_only() -> None:
    if not current_user.is_site_admin:
        abort(403, "Only site administrators manage users.")


@bp.get("/admin/users")
@login_required
def users():
    _site_admin_only()
    return _render(UserForm(formdata=None))


@bp.post("/admin/users")
@login_required
def create_user():
    _site_admin_only()
    form = UserForm()
    try:
        accounts.create_user(form.email.data or "", form.password.data or "",
                             name=form.name.data or "",
                             site_admin=bool(form.site_admin.data), actor=actor())
    except Invalid as error:
        for field, messages in error.field_errors.items():
            getattr(form, field).errors = list(messages)
        return _render(form, status=422)
    if not wants_fragment():
        return redirect(url_for("admin.users"), 303)
    return _render(UserForm(formdata=None), created=form.email.data.strip().lower())


@bp.post("/admin/users/<int:user_id>/remove")
@login_required
def remove_user(user_id: int):
    _site_admin_only()
    person = db.get_or_404(User, user_id)
    try:
        accounts.remove_user(person, actor())
    except Conflict as error:
        abort(409, str(error))
    if not wants_fragment():
        return redirect(url_for("admin.users"), 303)
    return _render(UserForm(formdata=None))


def _render(form: UserForm, status: int = 200, created: str | None = None):
    people = list(db.session.scalars(select(User).order_by(func.lower(User.email))))
    return render("admin/users.html", "user_admin", status=status, form=form, people=people,
                  created=created)
