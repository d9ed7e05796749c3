"""Werkzeug's URL rules, parsed and compiled once per test run instead of once per app.

Every test builds its own app, and werkzeug parses each route's text into parts (regular
expressions, weights, converters) and compiles two Python functions per route for `url_for`
(an AST generated and compiled): ~100 ms of CPU per app for ~190 routes, more than the rest
of the app factory. Both depend only on the rule's text, the map's converters and the rule's
defaults:

- a parse is replayed from the first one of the same text with the same converter classes:
  the same parts and trace, and copies of its converters bound to this rule's map;
- a builder is bound to its rule only after compilation (`Rule.compile` calls `__get__`), so
  the same function serves every app's copy of the rule.

The apps behave exactly the same.
"""

from collections.abc import Callable, Hashable, Iterable
from typing import Any

from werkzeug.routing.converters import BaseConverter
from werkzeug.routing.rules import Rule, RulePart

_compile = Rule._compile_builder
_parse = Rule._parse_rule
_builders: dict[Hashable, Callable[..., Any]] = {}
_parses: dict[Hashable, tuple[list[RulePart], list[tuple[bool, str]],
                              dict[str, BaseConverter]]] = {}


def _converters_key(url_map: Any) -> Hashable:
    """The map's converter classes by name, computed once per map (all its converters are
    installed before its first route)."""
    key = url_map.__dict__.get("_converters_key")
    if key is None:
        key = url_map._converters_key = tuple(sorted(url_map.converters.items()))
    return key


def _cached_builder(self: Rule, append_unknown: bool = True) -> Callable[..., Any]:
    # The parse (trace and converters) follows from the text and the map's converter classes.
    key = (self.rule, _converters_key(self.map),
           repr(sorted(self.defaults.items())) if self.defaults else None, append_unknown)
    builder = _builders.get(key)
    if builder is None:
        builder = _builders[key] = _compile(self, append_unknown)
    return builder


def _cached_parse(self: Rule, rule: str) -> Iterable[RulePart]:
    assert self.map is not None
    key = (rule, _converters_key(self.map))
    parsed = _parses.get(key)
    if parsed is None:
        trace_before, converters_before = len(self._trace), dict(self._converters)
        parts = list(_parse(self, rule))
        parsed = _parses[key] = (
            parts, self._trace[trace_before:],
            {name: c for name, c in self._converters.items() if name not in converters_before})
        return parts
    parts, trace, converters = parsed
    self._trace.extend(trace)
    for name, converter in converters.items():
        mine = object.__new__(type(converter))
        mine.__dict__.update(converter.__dict__, map=self.map)
        self._converters[name] = mine
        self.arguments.add(name)
    return parts


def install() -> None:
    Rule._compile_builder = _cached_builder  # type: ignore[method-assign]
    Rule._parse_rule = _cached_parse  # type: ignore[method-assign]
