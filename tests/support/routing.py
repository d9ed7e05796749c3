"""Werkzeug's URL builders, compiled once per test run instead of once per app.

Every test builds its own app, and werkzeug compiles two Python functions per route for
`url_for` (an AST generated and compiled, ~75 ms of CPU per app for ~160 routes: more than the
rest of the app factory). A builder depends only on the rule's text, its converters and its
defaults, and is bound to its rule only after compilation (`Rule.compile` calls `__get__`), so
the same function serves every app's copy of the rule: the apps behave exactly the same.
"""

from collections.abc import Callable, Hashable
from typing import Any

from werkzeug.routing.rules import Rule

_compile = Rule._compile_builder
_builders: dict[Hashable, Callable[..., Any]] = {}


def _cached_builder(self: Rule, append_unknown: bool = True) -> Callable[..., Any]:
    key = (self.rule, tuple(self._trace), repr(sorted((self.defaults or {}).items())),
           tuple((name, type(c), c.regex) for name, c in self._converters.items()),
           append_unknown)
    builder = _builders.get(key)
    if builder is None:
        builder = _builders[key] = _compile(self, append_unknown)
    return builder


def install() -> None:
    Rule._compile_builder = _cached_builder  # type: ignore[method-assign]
