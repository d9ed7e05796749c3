"""The project's audit log: filter, page through, export as CSV."""

from flask import Blueprint, Response, current_app, request, stream_with_context, url_for
from flask_login import login_required

from webapp.forms.audit import AuditFilterForm
from webapp.htmx import render
from webapp.parsing import ascii_int
from webapp.services.governance import audit_log
from webapp.views.context import can, project_or_404

bp = Blueprint("audit", __name__)

# Which page an entry's object opens: object types -> (endpoint, the entry's id column).
_OBJECT_PAGES = {
    "feature": ("flags.detail", "object_id"),
    "feature_state": ("flags.detail", "feature_id"),
    "segment_override": ("flags.detail", "feature_id"),
    "release_pipeline": ("pipelines.detail", "pipeline_id"),
    "pipeline": ("pipelines.detail", "pipeline_id"),
    "pipeline_run": ("flags.detail", "feature_id"),
    "segment": ("segments.detail", "object_id"),
    "change_request": ("change_requests.detail", "change_request_id"),
}


@bp.get("/projects/<int:project_id>/audit")
@login_required
def index(project_id: int):
    project = project_or_404(project_id, needs="viewer")
    choices = audit_log.filter_choices(project.id)
    form = AuditFilterForm(formdata=request.args).offer(choices)
    context = {"project": project, "form": form, "choices": choices, "page": None,
               "object_link": _object_linker(project.id), "filter_args": {},
               "masked": not can("admin")}
    if not form.validate():
        return render("audit/index.html", "audit_log", status=422, **context)
    context["filter_args"] = form.query_args()
    context["page"] = audit_log.page(
        project.id, form.filters(), masked=context["masked"],
        before=_cursor("before"), after=_cursor("after"),
    )
    return render("audit/index.html", "audit_log", **context)


@bp.get("/projects/<int:project_id>/audit/export.csv")
@login_required
def export(project_id: int):
    project = project_or_404(project_id, needs="viewer")
    choices = audit_log.filter_choices(project.id)
    form = AuditFilterForm(formdata=request.args).offer(choices)
    if not form.validate():
        return render("audit/index.html", "audit_log", status=422, project=project, form=form,
                      choices=choices, page=None, object_link=_object_linker(project.id),
                      filter_args={}, masked=not can("admin"))
    chunks = audit_log.export_csv(project.id, form.filters(), masked=not can("admin"))
    response = Response(stream_with_context(chunks), mimetype="text/csv")
    response.headers["Content-Disposition"] = (
        f'attachment; filename="audit-project-{project.id}.csv"')
    return response


def _cursor(name: str) -> int | None:
    """A keyset cursor from the query string; anything but a positive id is ignored."""
    return ascii_int(request.args.get(name))


def _object_linker(project_id: int):
    """object_link(entry) -> URL of the entry's object page, or None while that page (another
    screen area) does not exist or the entry lacks the id."""
    argument_of: dict[str, str | None] = {}

    def _argument(endpoint: str) -> str | None:
        if endpoint not in argument_of:
            argument_of[endpoint] = None
            if endpoint in current_app.view_functions:
                for rule in current_app.url_map.iter_rules(endpoint):
                    others = rule.arguments - {"project_id"}
                    if len(others) == 1 and "project_id" in rule.arguments:
                        argument_of[endpoint] = others.pop()
                        break
        return argument_of[endpoint]

    def object_link(entry: audit_log.EntryRow) -> str | None:
        endpoint, column = _OBJECT_PAGES.get(entry.object_type, (None, None))
        if endpoint is None or column is None:
            return None
        object_id = getattr(entry, column)
        if column == "pipeline_id" and object_id is None:
            object_id = entry.object_id
        argument = _argument(endpoint)
        if object_id is None or argument is None:
            return None
        return url_for(endpoint, project_id=project_id, **{argument: object_id})

    return object_link
