"""Werkzeug's URL map, built once per test run for each set of routes instead of once per app.

Every test builds its own app, and its ~190 routes were each parsed, compiled into two
`url_for` functions (an AST generated and compiled) and inserted into the map's state machine:
most of the app factory's CPU. What that builds depends only on the rules (their text, endpoint,
methods, defaults and options) and the map's settings and converters, and it is never changed
once built. So a test app's map only records the rules it is given; the first time it is used,
it takes the matcher and the rules of a map built from equal rules, building that map (from
copies of its rules) when there is none yet.

An app whose map gets a rule after that first use builds its own from all of its rules. The
apps behave exactly the same.
"""

from collections.abc import Hashable
from typing import Any

from flask import Flask
from werkzeug.routing import Map, Rule
from werkzeug.routing.matcher import StateMachineMatcher

_built: dict[Hashable, Map] = {}


def _signature(rule: Rule) -> Hashable:
    return (type(rule), rule.rule, rule.endpoint, frozenset(rule.methods or ()),
            repr(rule.defaults), rule.subdomain, rule.host, rule.strict_slashes,
            rule.merge_slashes, repr(rule.redirect_to), rule.alias, rule.build_only,
            rule.websocket, getattr(rule, "provide_automatic_options", None))


def _copy(rule: Rule) -> Rule:
    copy = type(rule)(rule.rule, **rule.get_empty_kwargs(), merge_slashes=rule.merge_slashes,
                      websocket=rule.websocket)
    if hasattr(rule, "provide_automatic_options"):  # Flask's, set after the rule is made
        copy.provide_automatic_options = rule.provide_automatic_options  # type: ignore[attr-defined]
    return copy


class SharedMap(Map):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Every rule added, in order; werkzeug's own _remap says that some came since the map
        # was last taken or built.
        self._given: list[Rule] = []
        self._own = False  # the matcher holds this map's own rules (bound to it)
        super().__init__(*args, **kwargs)

    def add(self, rulefactory: Any) -> None:
        if type(rulefactory) is not Rule:  # a factory (Submount...): built here, as werkzeug does
            self._build_own()
            super().add(rulefactory)
            return
        if self._own:
            super().add(rulefactory)
        else:
            self._given.append(rulefactory)
            self._remap = True

    def _key(self) -> Hashable:
        settings = (self.default_subdomain, self.strict_slashes, self.merge_slashes,
                    self.redirect_defaults, self.host_matching, self.sort_parameters,
                    self.sort_key, tuple(sorted(self.converters.items())))
        return settings, tuple(_signature(rule) for rule in self._given)

    def _take_or_build(self) -> None:
        key = self._key()
        built = _built.get(key)
        if built is None:
            built = Map(default_subdomain=self.default_subdomain,
                        strict_slashes=self.strict_slashes, merge_slashes=self.merge_slashes,
                        redirect_defaults=self.redirect_defaults,
                        converters=self.converters, sort_parameters=self.sort_parameters,
                        sort_key=self.sort_key, host_matching=self.host_matching)
            for rule in self._given:
                built.add(_copy(rule))
            built.update()
            _built[key] = built
        self._matcher = built._matcher
        self._rules_by_endpoint = built._rules_by_endpoint
        self._remap = False

    def _build_own(self) -> None:
        """From now on this map holds its own rules, as werkzeug's does."""
        if self._own:
            return
        self._matcher = StateMachineMatcher(self.merge_slashes)
        self._rules_by_endpoint = {}
        self._own = True
        for rule in self._given:
            super().add(rule)
        self._given = []

    def update(self) -> None:
        if self._remap and not self._own:
            with self._remap_lock:
                if self._remap and not self._own:
                    if self._rules_by_endpoint:  # taken before: more rules came since
                        self._build_own()
                    else:
                        self._take_or_build()
        super().update()

    @property
    def _rules(self) -> list[Rule]:
        self.update()
        return [rule for rules in self._rules_by_endpoint.values() for rule in rules]


def install() -> None:
    Flask.url_map_class = SharedMap
