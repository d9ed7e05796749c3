"""Database engine tuning: SQLite in WAL mode with a busy timeout; writers that read first
take the write lock up front (`begin_immediate`)."""

from flask import has_request_context, request
from sqlalchemy import event
from sqlalchemy.engine import Engine

from webapp.extensions import db

_IMMEDIATE = "railyard_begin_immediate"


def begin_immediate() -> None:
    """Start the session's transaction holding SQLite's write lock (BEGIN IMMEDIATE).

    Call first in a unit of work that reads rows and then writes based on them (engine
    transitions): in WAL mode a deferred reader that later writes fails at once with
    "database is locked" if another writer committed in between. On PostgreSQL it is a no-op;
    row versions (compare-and-set) are the guard there and on SQLite alike.
    """
    if db.session().in_transaction():
        return
    db.session.connection(execution_options={_IMMEDIATE: True})


def tune_sqlite(engine: Engine) -> None:
    """WAL + busy_timeout; pysqlite's own transaction handling is switched off (the SQLAlchemy
    recipe) so we emit BEGIN ourselves, IMMEDIATE when `begin_immediate` asked for it."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        immediate = connection.get_execution_options().get(_IMMEDIATE) or _in_writing_request()
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _in_writing_request() -> bool:
    """A POST/PUT/PATCH/DELETE reads (who is signed in, their role) before it writes: each of its
    transactions takes the write lock at BEGIN, where busy_timeout waits its turn, rather than
    at the first write, where SQLite gives up at once if another writer came in between."""
    return has_request_context() and request.method not in ("GET", "HEAD", "OPTIONS")
