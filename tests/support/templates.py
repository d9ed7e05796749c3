"""Jinja's compiled templates, shared by every app of a test run instead of made per app.

Every test builds its own app, and each app's Jinja environment compiles every template it
renders from source (lexer, parser, code generator: ~15 ms of CPU per template, several per
page). Jinja's own bytecode cache hook keeps the compiled module code of a template, keyed by
its name and checked against its source's checksum, so a template changed on disk is compiled
again; what a template renders still comes from each app's own environment (its globals,
filters and loader). All apps here come from the one factory, with the same Jinja settings.
"""

from flask import Flask
from jinja2 import BytecodeCache
from jinja2.bccache import Bucket
from jinja2.environment import Environment


class _InMemory(BytecodeCache):
    def __init__(self) -> None:
        self._compiled: dict[str, tuple[str, object]] = {}

    def load_bytecode(self, bucket: Bucket) -> None:
        found = self._compiled.get(bucket.key)
        if found is not None and found[0] == bucket.checksum:
            bucket.code = found[1]  # type: ignore[assignment]

    def dump_bytecode(self, bucket: Bucket) -> None:
        self._compiled[bucket.key] = (bucket.checksum, bucket.code)


_CACHE = _InMemory()
_create = Flask.create_jinja_environment


def _with_shared_cache(self: Flask) -> Environment:
    environment = _create(self)
    environment.bytecode_cache = _CACHE
    return environment


def install() -> None:
    Flask.create_jinja_environment = _with_shared_cache  # type: ignore[method-assign]
