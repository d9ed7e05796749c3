"""The one place that knows htmx's headers: fragment detection, block rendering, navigation."""

from typing import Any

from flask import Response, make_response, render_template, request
from jinja2_fragments.flask import render_block


def is_htmx() -> bool:
    """The request came from htmx (history restores included)."""
    return bool(getattr(request, "htmx", False))


def wants_fragment() -> bool:
    """An htmx request that is not a history restore (which needs the full page)."""
    htmx = getattr(request, "htmx", None)
    if not htmx:
        return False
    return not htmx.history_restore_request


def render(template: str, block: str, status: int = 200, **context: Any) -> Response:
    """The page, or only its `block` for an htmx request (the block's name is the id it fills)."""
    if wants_fragment():
        body = render_block(template, block, **context)
    else:
        body = render_template(template, **context)
    response = make_response(body, status)
    response.vary.add("HX-Request")
    return response


def location(url: str) -> Response:
    """Navigate to another page: HX-Redirect for htmx (never a bare 302), else a 303.

    Not HX-Location: htmx fetches that URL as an htmx request and swaps it into <body>, so the
    page would answer with its fragment and lose the layout around it.
    """
    if wants_fragment():
        response = make_response("", 200)
        response.headers["HX-Redirect"] = url
        return response
    response = make_response("", 303)
    response.headers["Location"] = url
    return response


def stop_polling(response: Response) -> Response:
    """htmx stops an `every Ns` trigger when the answer is 286."""
    response.status_code = 286
    return response


def trigger(response: Response, event: str) -> Response:
    response.headers["HX-Trigger"] = event
    return response


def retarget(response: Response, target: str, swap: str = "innerHTML") -> Response:
    """Swap the answer into `target` instead of the element that asked (e.g. an error into the
    page's flash area)."""
    response.headers["HX-Retarget"] = target
    response.headers["HX-Reswap"] = swap
    return response
