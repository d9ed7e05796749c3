"""PostgreSQL: one engine per test database, shared by the apps of every test on it.

Every test's app made its own engine, so its first statement waited for a new PostgreSQL
backend, which then loaded the catalog entries of each table it touched: half of the server's
CPU in a test run. Here the apps of a worker's tests reuse one engine (its pool and warm
connections) for the same URL and options; a test's data is still emptied before it
(tests/conftest.py's `database_url`), and what a connection carries between tests is what it
carries between a process's requests. SQLite engines stay per app: each test has its own file.
"""

from typing import Any

from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.engine import Engine

_made: list[Any] = []  # the engine maker this wraps
_engines: dict[tuple[str, str], Engine] = {}


def _shared_engine(self: SQLAlchemy, bind_key: str | None, options: dict[str, Any],
                   app: Flask) -> Engine:
    url = options.get("url")
    if url is None or not str(url).startswith("postgresql"):
        return _made[0](self, bind_key, options, app)
    key = (str(url), repr(sorted((name, value) for name, value in options.items()
                                 if name != "url")))
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = _made[0](self, bind_key, options, app)
    return engine


def shared(engine: Engine) -> bool:
    return engine in _engines.values()


def dispose_all() -> None:
    for engine in _engines.values():
        engine.dispose()
    _engines.clear()


def install() -> None:
    """After statements.install: the shared engines share its compiled SQL too."""
    _made.append(SQLAlchemy._make_engine)
    SQLAlchemy._make_engine = _shared_engine  # type: ignore[method-assign]
