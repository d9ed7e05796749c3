"""SQLAlchemy's compiled SQL, shared by the engines of every app of a test run.

Every test's app makes its own engine, and an engine keeps the SQL it compiled from the
statements it ran in a cache of its own, keyed by the statement's structure and the engine's
dialect object: so every test compiled every statement it ran again (a fifth of a typical
test's CPU). Here the engines the apps make share one cache per kind of dialect (its class,
its parameter style and the server version it found), which makes the keys of equal dialects
equal: the SQL sent is the same text a test's own engine would have compiled, and production
keeps such a cache per process too. Engines a test makes itself keep their own cache.

The ORM's own INSERT, UPDATE and DELETE statements (a flush's) are kept in a cache of each
mapper's, keyed the same way: the mappers share one such cache too.
"""

from collections.abc import Hashable
from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.engine import Dialect, Engine
from sqlalchemy.orm import Mapper
from sqlalchemy.util import LRUCache

_make_engine = SQLAlchemy._make_engine


def _kind(dialect: Dialect) -> Hashable:
    return (type(dialect), dialect.paramstyle, dialect.server_version_info,
            dialect.default_schema_name)


class _SharedCompiled:
    """The engine's compiled cache (`get` and item assignment are all SQLAlchemy uses), keyed
    by the dialect's kind instead of the dialect object."""

    def __init__(self) -> None:
        self._compiled: LRUCache = LRUCache(2000)

    def get(self, key: tuple, default: Any = None) -> Any:
        return self._compiled.get((_kind(key[0]), *key[1:]), default)

    def __setitem__(self, key: tuple, compiled: Any) -> None:
        self._compiled[(_kind(key[0]), *key[1:])] = compiled

    def clear(self) -> None:
        self._compiled.clear()


_SHARED = _SharedCompiled()
_SHARED_BY_MAPPERS = _SharedCompiled()


def _engine_sharing_compiled_sql(self: SQLAlchemy, bind_key: str | None,
                                 options: dict[str, Any], app: Flask) -> Engine:
    engine = _make_engine(self, bind_key, options, app)
    engine._compiled_cache = _SHARED  # type: ignore[assignment]
    return engine


def install() -> None:
    SQLAlchemy._make_engine = _engine_sharing_compiled_sql  # type: ignore[method-assign]
    Mapper._compiled_cache = property(lambda _mapper: _SHARED_BY_MAPPERS)  # type: ignore
