"""Sign in and out."""

from urllib.parse import urlsplit

from flask import Blueprint, redirect, request, url_for
from flask_login import current_user, login_required, login_user, logout_user

from webapp import throttle
from webapp.forms.auth import LoginForm
from webapp.htmx import render
from webapp.services.platform import users

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    if (target and not urlsplit(target).netloc
            and target.startswith("/") and not target.startswith("//")):
        return target
    return url_for("projects.index")


@bp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("projects.index"))
    form = LoginForm()
    if form.validate_on_submit():
        checks = throttle.sign_in_checks(form.email.data, request.remote_addr or "")
        wait = throttle.retry_after(*checks)
        if wait:
            form.password.errors.append(
                f"Too many failed sign-ins. Try again in {throttle.in_words(wait)}.")
            response = render("auth/login.html", "login_form", status=429, form=form)
            response.headers["Retry-After"] = str(wait)
            return response
        user = users.authenticate(form.email.data, form.password.data)
        if user:
            throttle.forget(*checks[0])
            login_user(user)
            return redirect(_safe_next(request.args.get("next")), 303)
        throttle.note_failure(*checks)
        form.password.errors.append("Wrong email or password.")
    status = 422 if form.is_submitted() else 200
    return render("auth/login.html", "login_form", status=status, form=form)


@bp.post("/logout")
@login_required
def logout():
    users.sign_out(current_user._get_current_object())
    logout_user()
    return redirect(url_for("auth.login"), 303)
