"""Progress boards: a published pipeline's flags per stage (live while flags are in flight),
the project's pipelines at a glance, and launches per day.

The board's state lives in its URL (`q` filters by flag name; `s<position>=N` / `launched=N`
show more cards in a column), so the poll, "show more" and the search box all ask the same
page for its `board` block. Card controls post to the `runs` endpoints (the engine's views);
their answer triggers `flag-changed`, on which the board asks for itself again.
"""

import re
from typing import Any
from urllib.parse import quote_plus

from flask import Blueprint, abort, request, url_for
from flask_login import login_required

from webapp.htmx import render, wants_fragment
from webapp.parsing import ascii_int
from webapp.services.pages import board
from webapp.services.pages import overview as overview_page
from webapp.views.context import can, project_or_404

bp = Blueprint("board", __name__)
PIPELINE = "/projects/<int:project_id>/pipelines/<int:pipeline_id>"
_COLUMN = re.compile(r"^(s\d{1,3}|launched)$", re.ASCII)
# Left unescaped in query strings, as werkzeug's url_for leaves them (WHATWG percent-encoding).
URL_SAFE = "!$'()*,/:;?@"

@bp.get("/projects/<int:project_id>/board")
@login_required
def overview(project_id: int):
    project = project_or_404(project_id)
    return render("board/overview.html", "overview", project=project,
                  glances=overview_page.overview(project.id))


@bp.get(f"{PIPELINE}/board")
@login_required
def pipeline(project_id: int, pipeline_id: int):
    project = project_or_404(project_id)
    state = _board_state()
    selected = state.pop("selected")
    view = board.pipeline_board(project.id, pipeline_id, chart=not wants_fragment(), **state)
    return render("board/pipeline.html", "board", project=project, board=view,
                  can_edit=can("editor"), selected=selected, **_links(project.id, view, selected))


@bp.get(f"{PIPELINE}/launches")
@login_required
def launches(project_id: int, pipeline_id: int):
    project = project_or_404(project_id)
    pipeline = board.published_pipeline(project.id, pipeline_id)
    return render("board/launches.html", "launch_chart", project=project, pipeline=pipeline,
                  launches=overview_page.launched_per_day(pipeline.id))


def _board_state() -> dict:
    """The board's query string: ?q=, ?run=<id>, and per-column limits ?s0=, ?launched=."""
    limits = {key: _whole(key, value, below=100_000)
              for key, value in request.args.items() if _COLUMN.match(key) and value}
    run = request.args.get("run")
    return {"query": request.args.get("q", ""), "limits": limits,
            "selected": _whole("run", run) if run else None}


def _whole(name: str, value: str, *, below: int | None = None) -> int:
    number = ascii_int(value, below=below)
    if number is None:
        abort(400, f"?{name}= takes a whole number in digits 0-9.")
    return number


def _links(project_id: int, view: board.Board, selected: int | None) -> dict:
    """URL builders for the template: the board with its state (for the poll, "show more" in
    a column, the card whose controls are open, clearing the search), flags, card controls."""
    state: dict = dict(view.limits)
    if view.query:
        state["q"] = view.query
    if selected:
        state["run"] = selected
    args: dict[str, Any] = {"project_id": project_id, "pipeline_id": view.pipeline.id}
    page = url_for("board.pipeline", **args)

    def board_url(more: board.Column | None = None, reset: bool = False,
                  select: int | None = None, relative: bool = False) -> str:
        if reset:
            return page
        wanted = dict(state)
        if more is not None:
            wanted[more.key] = more.limit + board.PAGE
        if select is not None:
            wanted.pop("run", None)
            if select:
                wanted["run"] = select
        # What url_for would build (werkzeug's own query encoding), without its routing work
        # once per column: a 30-stage board asks for about thirty of these per poll.
        query = _query_string(wanted)
        # Links inside the board are relative to the board page: "?run=12" (the poll stays
        # small).
        if relative:
            return f"?{query}" if query else page
        return f"{page}?{query}" if query else page

    flags = url_for("flags.detail", project_id=project_id, feature_id=0)[:-len("0")]

    def flag_url(feature_id: int) -> str:
        return f"{flags}{feature_id}"

    # What board_url(select=<run id>, relative=True) gives, less the id: cards append their own
    # run id (a function call per card costs more than the rest of its link).
    unselected = _query_string({k: v for k, v in state.items() if k != "run"})
    manage = f"?{unselected}&run=" if unselected else "?run="

    # One url_for for the pattern, not one per card and action (boards hold hundreds of cards).
    # The runs endpoints: .../runs/<id>/<pause|resume|advance|retry|remove|rollback>; a GET of
    # remove / rollback is their confirmation page (the no-JavaScript way to confirm).
    pattern = url_for("runs.pause", project_id=project_id, run_id=0)[:-len("/0/pause")]

    def control_url(run_id: int, action: str) -> str:
        return f"{pattern}/{run_id}/{action}"

    # The stage's "review the waiting requests together" page: .../change-requests/stage/<id>.
    batch = url_for("change_requests.batch", project_id=project_id, stage_id=0)[:-len("0")]
    return {"board_url": board_url, "control_url": control_url, "flag_url": flag_url,
            "flags_url": flags, "manage_url": manage, "batch_url": batch}


def _query_string(state: dict) -> str:
    """urlencode(state, safe=URL_SAFE) for the board's state: its keys and numbers need no
    quoting, only the search text does (the same bytes, without quoting every part)."""
    return "&".join(f"{key}={value}" if isinstance(value, int)
                    else f"{key}={quote_plus(value, safe=URL_SAFE)}"
                    for key, value in state.items())
