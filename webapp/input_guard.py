"""Refuses text with NUL characters in any request, before a view sees it.

PostgreSQL cannot store U+0000 in text columns (the insert fails), and no name, value or rule
in Railyard has a use for it: one clear 400 here instead of a 500 from some deep insert.
"""

from typing import Any

from flask import Flask, abort, request

NUL = "\x00"


def register(app: Flask) -> None:
    @app.before_request
    def _refuse_nul() -> None:
        if _has_nul(request.args) or _has_nul(request.form) or _has_nul(request.view_args):
            abort(400, "Text may not contain NUL characters (\\u0000).")
        if request.is_json and _has_nul(request.get_json(silent=True)):
            abort(400, "Text may not contain NUL characters (\\u0000).")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return NUL in value
    if hasattr(value, "lists"):  # werkzeug MultiDict (a dict too): every value of every key
        return any(_has_nul(key) or _has_nul(items) for key, items in value.lists())
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False
