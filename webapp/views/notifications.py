"""Live pages and the inbox: the change check every open page polls, and the notifications page
(what waits for me, read / unread).

Every dashboard page carries a small watcher (`_live.html`) holding the page's change token.
It asks `/changes?project=<id>&since=<token>`: 204 (a few bytes) while nothing changed; when
something did, 200 with a fresh watcher (new token and interval) and the navigation's inbox
count out of band, plus the `project-changed` event on which the page's regions ask for
themselves again. Why polling and not server-sent events: it needs no long-lived connection per
open page (threads / workers), survives proxies and sleeping laptops, and the idle answer is
cheaper than an SSE keep-alive.
"""

from flask import Blueprint, current_app, g, make_response, render_template, request, url_for
from flask_login import current_user, login_required

from webapp.htmx import location, render, trigger, wants_fragment
from webapp.parsing import ascii_int
from webapp.services.pages import live
from webapp.views.context import project_or_404

bp = Blueprint("notifications", __name__)
CHANGED = "project-changed"


@bp.app_context_processor
def _live_watch():
    """base.html asks `live_watch()` for the watcher of a signed-in person's page."""
    return {"live_watch": watch_state} if current_user.is_authenticated else {}


def watch_state() -> dict:
    """The watcher's token and interval for the page being rendered (see views.context)."""
    user_id = current_user.id
    project_token = g.get("live_token")
    if project_token is None and g.get("project") is not None:
        project_token = live.project_token(g.project.id)
    since, count = live.inbox_token(user_id)
    moving = False
    if project_token is not None:
        since = f"{project_token.value}~{since}"
        moving = project_token.moving
    interval = live.LIVE_SECONDS if moving else idle_seconds()
    return {"since": since, "interval": f"{interval:g}",
            "project_id": g.project.id if g.get("project") is not None else None,
            "inbox": count}


def idle_seconds() -> float:
    return float(current_app.config.get("LIVE_IDLE_SECONDS", live.IDLE_SECONDS))


@bp.get("/changes")
def changes():
    """204 while the page is current; 200 with a new watcher and `project-changed` otherwise.
    A person signed out meanwhile (or whose session was revoked) is sent to the sign-in page,
    instead of the sign-in form being swapped into the watcher."""
    if not current_user.is_authenticated:
        return location(url_for("auth.login"))
    project_id = request.args.get("project", "")
    if project_id:
        if ascii_int(project_id, below=2**31) is None:
            return make_response("Bad project.", 400)
        project_or_404(int(project_id))
    state = watch_state()
    if request.args.get("since", "") == state["since"]:
        response = make_response("", 204)
    else:
        response = trigger(make_response(_render_watch(state)), CHANGED)
    response.headers["Cache-Control"] = "no-store"
    return response


def _render_watch(state: dict) -> str:
    return render_template("_live.html", live=state, oob=True)


@bp.get("/notifications")
@login_required
def index():
    page = ascii_int(request.args.get("page", "1"), below=100_000)
    box = live.inbox(current_user.id, page=page or 1)
    return render("notifications/index.html", "inbox", box=box)


@bp.post("/notifications/<int:notification_id>/<any(read, unread):what>")
@login_required
def mark(notification_id: int, what: str):
    live.mark_read(current_user.id, notification_id, read=what == "read")
    return _back()


@bp.post("/notifications/read")
@login_required
def mark_all():
    live.mark_all_read(current_user.id)
    return _back()


def _back():
    if wants_fragment():
        box = live.inbox(current_user.id)
        return trigger(render("notifications/index.html", "inbox", box=box), "inbox-changed")
    return location(url_for("notifications.index"))
