"""Refuses, before any view sees it, request text that no part of Railyard can take: one clear
400 here instead of a 500 from deep inside whichever code first trips on it.

- NUL characters (U+0000): PostgreSQL cannot store them in text columns.
- Lone surrogates (U+D800-U+DFFF, e.g. JSON's "\\ud800"): not text at all; they cannot be
  encoded as UTF-8, so storing, comparing or matching them fails.
- JSON nested deeper than `MAX_JSON_DEPTH`: Python's parser and the recursive code after it run
  out of stack (RecursionError) on a few thousand levels.

Query strings, form fields (names and values), URL parts and JSON bodies (keys and values) are
all checked; the walk over JSON is iterative, so no depth can make the guard itself fail. Ids in
URLs are ASCII digits that fit a 64-bit column (`IdConverter`), or the URL matches no route.
"""

import re
from typing import Any

from flask import Flask, abort, request
from werkzeug.routing import IntegerConverter

# Far above any document Railyard takes (a segment's rules, 4 levels deep, are about 12 levels
# of JSON; a rule tree nested 200 deep still gets its own 422 from the segment rules), and far
# below where Python's parser runs out of stack within a request.
MAX_JSON_DEPTH = 512

NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")

NUL_MESSAGE = "Text may not contain NUL characters (\\u0000)."
SURROGATE_MESSAGE = ("Text may not contain lone surrogates (\\ud800-\\udfff): send text as "
                     "UTF-8, or a surrogate pair for characters beyond the BMP.")
DEPTH_MESSAGE = f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels."


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: ASCII digits that fit a 64-bit id column. A longer number
    (which SQLite and PostgreSQL refuse to compare with their ids) matches no route: 404."""

    regex = r"[0-9]{1,18}"


def install_converters(app: Flask) -> None:
    """Before any route is registered: ids in URLs are `IdConverter`s."""
    app.url_map.converters["int"] = IdConverter


def register(app: Flask) -> None:
    @app.before_request
    def _refuse_unusable_text() -> None:
        for source in (request.view_args, request.args, request.form):
            if refusal := _refusal(_texts(source)):
                abort(400, refusal)
        if request.is_json:
            try:
                payload = request.get_json(silent=True)
            except RecursionError:
                abort(400, DEPTH_MESSAGE)
            if refusal := json_refusal(payload):
                abort(400, refusal)


def json_refusal(payload: Any) -> str | None:
    """Why a parsed JSON body is refused (the 400's message), or None when it is usable.
    webapp/sdk_fast.py asks too: it answers only what this guard would let through."""
    try:
        return _refusal(_json_texts(payload))
    except _TooDeep:
        return DEPTH_MESSAGE


def json_body_refusal(body: bytes, payload: Any) -> str | None:
    """json_refusal(payload) for the payload json.loads parsed from `body`, read off the bytes
    when they show there is nothing to refuse (a few µs, where the walk costs tens): a NUL or a
    lone surrogate can only come from a `\\u` escape, a NUL byte (any UTF-16 or UTF-32 body has
    some) or UTF-8 surrogate bytes (0xED), and nesting past MAX_JSON_DEPTH takes more opening
    brackets than that. Anything else is walked as json_refusal walks it."""
    if (b"\\u" not in body and b"\x00" not in body and b"\xed" not in body
            and body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH):
        return None
    return json_refusal(payload)


def _refusal(texts: Any) -> str | None:
    for text in texts:
        if NUL in text:
            return NUL_MESSAGE
        if _SURROGATE.search(text):
            return SURROGATE_MESSAGE
    return None


class _TooDeep(Exception):
    pass


def _texts(source: Any) -> Any:
    """Every key and value of view args or a werkzeug MultiDict (all values of each key)."""
    if not source:
        return
    pairs = source.lists() if hasattr(source, "lists") else source.items()
    for key, values in pairs:
        yield str(key)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str):
                yield value


def _json_texts(payload: Any) -> Any:
    """Every string (keys too) of a parsed JSON body; raises _TooDeep past MAX_JSON_DEPTH."""
    stack = [(payload, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _TooDeep
            if isinstance(value, dict):
                yield from (key for key in value if isinstance(key, str))
                stack.extend((item, depth + 1) for item in value.values())
            else:
                stack.extend((item, depth + 1) for item in value)
