"""The release calendar's screens: a project's calendar under Settings (everyone reads it, admins
change it: deployment windows per environment, freezes, the stop-the-line switch), the
organisation's calendar beside the site administration (organisation-wide freezes and stop), and
the banner that project pages show while frozen or stopped.

Each change: the form checks what was typed (422 with the message beside the field, nothing
changed), the calendar's service applies the rules and commits, the section answers again.
"""

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, redirect, url_for
from flask_login import current_user, login_required
from flask_wtf import FlaskForm

from jobs import transitions
from webapp.forms.calendar import FreezeForm, LiftForm, StopForm, WindowForm
from webapp.htmx import render, wants_fragment
from webapp.models import Project
from webapp.services.errors import Conflict, Invalid
from webapp.services.pages import calendar_holds, calendar_page
from webapp.services.platform import projects
from webapp.services.runs import calendar
from webapp.views.context import actor, can, project_or_404

bp = Blueprint("calendar", __name__)

PAGE = "/projects/<int:project_id>/settings/calendar"
ORGANISATION = "/admin/calendar"


@bp.app_context_processor
def _calendar_globals() -> dict[str, Any]:
    """`calendar_state(project_id)`: what the banner of a project's page shows (one call per
    page, made by the page that shows the banner)."""
    return {"calendar_state": calendar_holds.banner}


# --- a project's calendar ------------------------------------------------------------------------


@bp.get(PAGE)
@login_required
def project(project_id: int):
    found = project_or_404(project_id)
    return _render_project(found, "calendar_page")


@bp.get("/projects/<int:project_id>/calendar/banner")
@login_required
def banner(project_id: int):
    found = project_or_404(project_id)
    return render("calendar/_banner.html", "calendar_banner", project=found,
                  banner=calendar_holds.banner(found.id))


@bp.post(f"{PAGE}/environments/<int:environment_id>/window")
@login_required
def set_window(project_id: int, environment_id: int):
    found = project_or_404(project_id, "admin")
    environment = calendar_page.environment_of(found.id, environment_id)
    form = WindowForm(prefix=f"env-{environment.id}")
    return _change(found, "window_list", {"window_forms": {environment.id: form}}, form,
                   lambda: calendar.set_windows(environment.id, form.timezone.data or "UTC",
                                                form.windows(), actor()))


@bp.post(f"{PAGE}/environments/<int:environment_id>/window/remove")
@login_required
def clear_window(project_id: int, environment_id: int):
    found = project_or_404(project_id, "admin")
    environment = calendar_page.environment_of(found.id, environment_id)
    schedule = calendar.get_schedule(environment.id)
    return _change(found, "window_list", {}, LiftForm(),
                   lambda: calendar.set_windows(environment.id, schedule.timezone, [], actor()))


@bp.post(f"{PAGE}/freezes")
@login_required
def create_freeze(project_id: int):
    found = project_or_404(project_id, "admin")
    form = _freeze_form(found)
    return _change(found, "freeze_list", {"freeze_form": form}, form,
                   lambda: _rung(calendar.create_freeze(
                       actor(), organisation_id=found.organisation_id, project_id=found.id,
                       starts_at=form.starts_at(), ends_at=form.ends_at(),
                       reason=form.reason.data or "", environment_ids=form.environment_ids())),
                   answer="calendar_page")


@bp.post(f"{PAGE}/freezes/<int:freeze_id>/lift")
@login_required
def lift_freeze(project_id: int, freeze_id: int):
    found = project_or_404(project_id, "admin")
    return _change(found, "calendar_page", {}, LiftForm(),
                   lambda: _rung(calendar.lift_freeze(
                       actor(), freeze_id, organisation_id=found.organisation_id,
                       project_id=found.id)))


@bp.post(f"{PAGE}/stop")
@login_required
def stop(project_id: int):
    found = project_or_404(project_id, "admin")
    form = StopForm(prefix="stop")
    return _change(found, "line_stop", {"stop_form": form}, form,
                   lambda: calendar.stop_line(actor(), organisation_id=found.organisation_id,
                                              project_id=found.id,
                                              reason=form.reason.data or ""),
                   answer="calendar_page")


@bp.post(f"{PAGE}/stop/lift")
@login_required
def lift_stop(project_id: int):
    found = project_or_404(project_id, "admin")
    return _change(found, "calendar_page", {}, LiftForm(),
                   lambda: _rung(calendar.lift_stop(actor(), organisation_id=found.organisation_id,
                                                    project_id=found.id)))


def _change(found: Project, block: str, forms: dict[str, Any], form: FlaskForm,
            change: Callable[[], Any], answer: str | None = None):
    """Check the form, run the change, answer the section: 200 (303 without htmx); 422 with the
    messages beside the fields (nothing changed); 409 with why it was refused."""
    if not form.validate_on_submit():
        return _render_project(found, block, 422, **forms)
    try:
        change()
    except Invalid as error:
        _attach(form, error)
        return _render_project(found, block, 422, **forms)
    except Conflict as error:
        return _render_project(found, block, 409, notices={block: error.message})
    if not wants_fragment():
        return redirect(url_for("calendar.project", project_id=found.id, _anchor=block), 303)
    return _render_project(found, answer or block)


def _render_project(found: Project, block: str, status: int = 200, **extra: Any):
    view = calendar_page.project_calendar(found)
    window_forms = {cal.environment_id: WindowForm(
        formdata=None, prefix=f"env-{cal.environment_id}", **cal.form_defaults)
        for cal in view.calendars}
    window_forms.update(extra.pop("window_forms", {}))
    context: dict[str, Any] = {
        "project": found,
        "can_admin": can("admin"),
        "calendars": view.calendars,
        "freezes": view.freezes,
        "stop": view.stop,
        "org_stop": view.organisation_stop,
        "window_forms": window_forms,
        "freeze_form": _freeze_form(found, formdata=None),
        "stop_form": StopForm(formdata=None, prefix="stop"),
        "lift_form": LiftForm(formdata=None),
        "notices": {},
    }
    context.update(extra)
    return render("calendar/project.html", block, status=status, **context)


def _freeze_form(found: Project | None, **kwargs: Any) -> FreezeForm:
    choices = ([(str(e.id), e.name) for e in projects.environments_of(found.id)]
               if found is not None else [])
    form = FreezeForm(environment_choices=choices, prefix="freeze", **kwargs)
    if kwargs.get("formdata", True) is None:
        form.timezone.data = form.timezone.data or "UTC"
    return form


# --- the organisation's calendar (site administrators) -------------------------------------------


def _site_admin_only() -> None:
    if not current_user.is_site_admin:
        abort(403, "Only site administrators change the organisation's calendar.")


@bp.get(ORGANISATION)
@login_required
def organisation():
    _site_admin_only()
    return _render_organisation("organisation_calendar")


@bp.post(f"{ORGANISATION}/freezes")
@login_required
def create_organisation_freeze():
    _site_admin_only()
    form = _freeze_form(None)
    return _organisation_change("organisation_calendar", {"freeze_form": form}, form,
                                lambda: _rung(calendar.create_freeze(
                                    actor(), organisation_id=calendar_page.organisation_of(),
                                    project_id=None, starts_at=form.starts_at(),
                                    ends_at=form.ends_at(), reason=form.reason.data or "")))


@bp.post(f"{ORGANISATION}/freezes/<int:freeze_id>/lift")
@login_required
def lift_organisation_freeze(freeze_id: int):
    _site_admin_only()
    return _organisation_change("organisation_calendar", {}, LiftForm(),
                                lambda: _rung(calendar.lift_freeze(
                                    actor(), freeze_id,
                                    organisation_id=calendar_page.organisation_of(),
                                    project_id=None)))


@bp.post(f"{ORGANISATION}/stop")
@login_required
def stop_organisation():
    _site_admin_only()
    form = StopForm(prefix="stop")
    return _organisation_change("organisation_calendar", {"stop_form": form}, form,
                                lambda: calendar.stop_line(
                                    actor(), organisation_id=calendar_page.organisation_of(),
                                    project_id=None, reason=form.reason.data or ""))


@bp.post(f"{ORGANISATION}/stop/lift")
@login_required
def lift_organisation_stop():
    _site_admin_only()
    return _organisation_change("organisation_calendar", {}, LiftForm(),
                                lambda: _rung(calendar.lift_stop(
                                    actor(), organisation_id=calendar_page.organisation_of(),
                                    project_id=None)))


def _organisation_change(block: str, forms: dict[str, Any], form: FlaskForm,
                         change: Callable[[], Any]):
    if not form.validate_on_submit():
        return _render_organisation(block, 422, **forms)
    try:
        change()
    except Invalid as error:
        _attach(form, error)
        return _render_organisation(block, 422, **forms)
    except Conflict as error:
        return _render_organisation(block, 409, notice=error.message)
    if not wants_fragment():
        return redirect(url_for("calendar.organisation"), 303)
    return _render_organisation(block)


def _render_organisation(block: str, status: int = 200, **extra: Any):
    view = calendar_page.organisation_calendar()
    context: dict[str, Any] = {
        "freezes": view.freezes,
        "stop": view.stop,
        "freeze_form": _freeze_form(None, formdata=None),
        "stop_form": StopForm(formdata=None, prefix="stop"),
        "lift_form": LiftForm(formdata=None),
        "notice": None,
    }
    context.update(extra)
    return render("calendar/organisation.html", block, status=status, **context)


# --- helpers -------------------------------------------------------------------------------------

# The service's field names where the forms name them otherwise.
FIELD_NAMES = {"starts_at": "starts", "ends_at": "ends", "windows": "weekdays"}


def _rung(outcome: tuple[Any, calendar.Released]) -> Any:
    """Ring the bells of the flags a lift (or a changed freeze) released, after the commit."""
    transitions.ring(outcome[1].bells)
    return outcome[0]



def _attach(form: FlaskForm, error: Invalid) -> None:
    """The service's messages beside the fields they name; the rest above the form."""
    for name, messages in (error.field_errors or {}).items():
        if name.startswith("windows."):
            name = name.rsplit(".", 1)[-1]  # windows.3.closes: the form's closes
        field = getattr(form, FIELD_NAMES.get(name, name), None)
        if field is not None and hasattr(field, "errors"):
            field.errors = [*list(field.errors or []), *messages]
        else:
            form.form_errors.extend(messages)
    if not error.field_errors:
        form.form_errors.append(error.message)
