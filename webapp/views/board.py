"""Progress boards: a published pipeline's flags per stage (live while flags are in flight),
the project's pipelines at a glance, launches per day, and the controls editors use on cards.

The board's state lives in its URL (`q` filters by flag name; `s<position>=N` / `launched=N`
show more cards in a column), so the poll, "show more" and the search box all ask the same
page for its `board` block. A control answers a notice and tells the board to refresh itself.
"""

import re

from flask import Blueprint, flash, redirect, request, url_for
from flask_login import login_required

from jobs.transitions import ring
from webapp.htmx import render, stop_polling, trigger, wants_fragment
from webapp.models import PipelineRun
from webapp.services import board, runs
from webapp.services.errors import Conflict, NotFound
from webapp.extensions import db
from webapp.views.context import actor, can, project_or_404

bp = Blueprint("board", __name__)
PIPELINE = "/projects/<int:project_id>/pipelines/<int:pipeline_id>"
REFRESH = "board-changed"
_COLUMN = re.compile(r"^(s\d{1,3}|launched)$")

# action -> (use case, what the notice says)
CONTROLS = {
    "pause": (runs.pause, "paused"),
    "resume": (runs.resume, "resumed"),
    "advance": (runs.advance_now, "advanced: its next step is due now"),
    "retry": (runs.retry, "retried"),
    "remove": (runs.remove, "removed from the pipeline; its states stay as they are"),
    "rollback": (runs.rollback, "rolled back and taken out of the pipeline"),
}


@bp.get("/projects/<int:project_id>/board")
@login_required
def overview(project_id: int):
    project = project_or_404(project_id)
    return render("board/overview.html", "overview", project=project,
                  glances=board.overview(project.id))


@bp.get(f"{PIPELINE}/board")
@login_required
def pipeline(project_id: int, pipeline_id: int):
    project = project_or_404(project_id)
    state = _board_state()
    view = board.pipeline_board(project.id, pipeline_id, **state)
    response = render("board/pipeline.html", "board", project=project, board=view,
                      can_edit=can("editor"), notice=None, **_links(project.id, view))
    if wants_fragment() and not view.live:
        return stop_polling(response)
    return response


@bp.get(f"{PIPELINE}/launches")
@login_required
def launches(project_id: int, pipeline_id: int):
    project = project_or_404(project_id)
    pipeline = board.published_pipeline(project.id, pipeline_id)
    return render("board/launches.html", "launch_chart", project=project, pipeline=pipeline,
                  launches=board.launched_per_day(pipeline.id))


@bp.post(f"{PIPELINE}/board/runs/<int:run_id>/<action>")
@login_required
def control(project_id: int, pipeline_id: int, run_id: int, action: str):
    """Pause, resume, advance, retry, remove or roll back one flag from its card."""
    project = project_or_404(project_id, "editor")
    if action not in CONTROLS:
        raise NotFound("No such control.")
    run = db.session.get(PipelineRun, run_id)
    if run is None or run.project_id != project.id or run.pipeline_id != pipeline_id:
        raise NotFound("This flag is not in that pipeline.")
    name = run.feature.name
    use_case, done = CONTROLS[action]
    try:
        bell = use_case(project, run_id, actor())
    except Conflict as error:
        return _answer(project.id, pipeline_id, error.message, "error", 409)
    if bell is not None:
        ring([bell])
    return _answer(project.id, pipeline_id, f"{name} {done}.", "success", 200)


def _answer(project_id: int, pipeline_id: int, message: str, category: str, status: int):
    if not wants_fragment():
        flash(message, category)
        return redirect(url_for("board.pipeline", project_id=project_id,
                                pipeline_id=pipeline_id), 303)
    response = render("board/pipeline.html", "board_notice", status=status,
                      notice=(message, category))
    return trigger(response, REFRESH)


def _board_state() -> dict:
    limits = {}
    for key, value in request.args.items():
        if _COLUMN.match(key) and value.isdigit() and len(value) < 6:
            limits[key] = int(value)
    return {"query": request.args.get("q", ""), "limits": limits}


def _links(project_id: int, view: board.Board) -> dict:
    """URL builders for the template: the board with its state (for the poll, "show more" in
    a column, clearing the search) and each card's controls."""
    state: dict = dict(view.limits)
    if view.query:
        state["q"] = view.query
    args = {"project_id": project_id, "pipeline_id": view.pipeline.id}

    def board_url(more: board.Column | None = None, reset: bool = False) -> str:
        if reset:
            return url_for("board.pipeline", **args)
        wanted = dict(state)
        if more is not None:
            wanted[more.key] = more.limit + board.PAGE
        return url_for("board.pipeline", **args, **wanted)

    # One url_for for the pattern, not one per card and action (boards hold hundreds of cards).
    pattern = url_for("board.control", **args, run_id=0, action="_")[:-len("/0/_")]

    def control_url(run_id: int, action: str) -> str:
        return f"{pattern}/{run_id}/{action}"

    return {"board_url": board_url, "control_url": control_url}
