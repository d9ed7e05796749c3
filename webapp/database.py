"""Database engine tuning: SQLite in WAL mode with a busy timeout; writers that read first
take the write lock up front (`begin_immediate`). On PostgreSQL: row locks in one order and a
unit of work retried once when the database aborts it (deadlock, serialization failure)."""

import functools
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, ParamSpec, TypeVar, cast

from flask import Flask, has_request_context, request
from flask.typing import ResponseReturnValue
from sqlalchemy import (
    ColumnElement,
    CursorResult,
    Delete,
    Table,
    Update,
    any_,
    bindparam,
    event,
    func,
    insert,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from webapp.extensions import db

_IMMEDIATE = "railyard_begin_immediate"
P = ParamSpec("P")
R = TypeVar("R")
SyncView = Callable[..., ResponseReturnValue]


def begin_immediate() -> None:
    """Start the session's transaction holding SQLite's write lock (BEGIN IMMEDIATE).

    Call first in a unit of work that reads rows and then writes based on them (engine
    transitions): in WAL mode a deferred reader that later writes fails at once with
    "database is locked" if another writer committed in between. On PostgreSQL it is a no-op;
    row versions (compare-and-set) are the guard there and on SQLite alike.
    """
    if db.session().in_transaction():
        return
    options: dict[str, Any] = {_IMMEDIATE: True}  # an option of ours, not one SQLAlchemy knows
    db.session.connection(execution_options=options)


def tune_sqlite(engine: Engine) -> None:
    """WAL + busy_timeout; pysqlite's own transaction handling is switched off (the SQLAlchemy
    recipe) so we emit BEGIN ourselves, IMMEDIATE when `begin_immediate` asked for it."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        configure_sqlite(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        immediate = connection.get_execution_options().get(_IMMEDIATE) or _in_writing_request()
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def configure_sqlite(dbapi_connection: Any) -> None:
    """What every SQLite connection runs first (the engine's, and the SDK reads' own in
    services/platform/sdk_documents.py): autocommit (pysqlite's own transactions off), WAL, a
    busy timeout, NORMAL sync (WAL stays consistent; a power cut may lose the last commits),
    foreign keys enforced."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _in_writing_request() -> bool:
    """A POST/PUT/PATCH/DELETE reads (who is signed in, their role) before it writes: each of its
    transactions takes the write lock at BEGIN, where busy_timeout waits its turn, rather than
    at the first write, where SQLite gives up at once if another writer came in between."""
    return has_request_context() and request.method not in ("GET", "HEAD", "OPTIONS")


# --- Units of work on PostgreSQL: one lock order, one retry -------------------------------------
#
# Row locks are taken in one order by every unit of work, so two of them never wait on each
# other in a cycle: pipeline runs, then change requests, then environments (their revision
# bumps, written last, at commit), each kind by ascending id. A unit of work that still loses a
# deadlock or a serialization race (PostgreSQL aborts it) is run again once from the start.

# SQLSTATEs PostgreSQL answers when it aborted a transaction that may succeed if run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected
_BEFORE_COMMIT = "railyard.before_commit"
_COMMITS = "railyard.commits"


def install_session_hooks() -> None:
    """Wire the session events behind `before_commit` and `retry_once` (once per process)."""
    if not event.contains(db.session, "before_commit", _run_before_commit):
        event.listen(db.session, "before_commit", _run_before_commit)
        event.listen(db.session, "after_commit", _count_commit)
        event.listen(db.session, "after_soft_rollback", _drop_before_commit)


def before_commit(name: str, callback: Callable[[Session, set], None], item: Hashable) -> None:
    """Run `callback(session, items)` just before the current transaction commits, after every
    other write of the unit of work, with every `item` noted under `name` in this transaction;
    dropped if it rolls back.

    The environment revision bumps use it: taken last and in id order, their row locks cannot
    close a cycle with the locks taken earlier in the unit of work."""
    pending = db.session.info.setdefault(_BEFORE_COMMIT, {})
    pending.setdefault(name, (callback, set()))[1].add(item)


def _run_before_commit(session: Session) -> None:
    for callback, items in session.info.pop(_BEFORE_COMMIT, {}).values():
        callback(session, items)


def _drop_before_commit(session: Session, _previous) -> None:
    session.info.pop(_BEFORE_COMMIT, None)


def _count_commit(session: Session) -> None:
    session.info[_COMMITS] = session.info.get(_COMMITS, 0) + 1


def commit_repeatable() -> None:
    """Commit bookkeeping that a unit of work may harmlessly write again when it is retried
    (when an API key was last used): unlike other commits, it does not rule out the retry."""
    commits = db.session.info.get(_COMMITS, 0)
    db.session.commit()
    db.session.info[_COMMITS] = commits


def lock_rows(session: Session, model, ids) -> None:
    """Take the rows' write locks in ascending id order (PostgreSQL; SQLite has one write lock).
    FOR NO KEY UPDATE: inserts that only reference these rows (foreign keys) are not blocked."""
    if session.get_bind().dialect.name != "postgresql" or not ids:
        return
    session.execute(select(model.id).where(model.id.in_(sorted(ids))).order_by(model.id)
                    .with_for_update(key_share=True))


def is_retryable(error: BaseException) -> bool:
    """Whether the database aborted the transaction for a deadlock or a serialization failure."""
    return (isinstance(error, DBAPIError)
            and getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES)


def retry_once(unit_of_work: Callable[P, R]) -> Callable[P, R]:
    """Run `unit_of_work` again, once, from a rolled-back session when the database aborted it
    (deadlock, serialization failure) before anything of it was committed."""

    @functools.wraps(unit_of_work)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        commits = db.session.info.get(_COMMITS, 0)
        try:
            return unit_of_work(*args, **kwargs)
        except DBAPIError as error:
            if not is_retryable(error) or db.session.info.get(_COMMITS, 0) != commits:
                raise
            db.session.rollback()
            return unit_of_work(*args, **kwargs)

    return run


def retry_views(app: Flask) -> None:
    """Every request is a unit of work: a view the database aborted runs again once."""
    for endpoint, view in list(app.view_functions.items()):
        # The app's views are all synchronous (an async one could not be retried this way).
        app.view_functions[endpoint] = retry_once(cast(SyncView, view))


def compare_and_set(model: Any, row_id: int, expected_version: int | None, *,
                    where: Sequence[ColumnElement[bool]] = (), **values: Any) -> bool:
    """The rule every concurrent writer keeps: write `values` to row `row_id` of `model` and
    bump its `version`, only if the version is still `expected_version` (None: the row's version
    whatever it is, bumped) and the row still matches `where`. True when the row was written;
    False when another writer got there first (nothing written; the caller decides: Conflict,
    skip, retry). Runs in the caller's transaction; objects in the session are not refreshed."""
    conditions = [model.id == row_id, *where]
    if expected_version is None:
        version: Any = model.version + 1
    else:
        conditions.append(model.version == expected_version)
        version = expected_version + 1
    statement = update(model).where(*conditions).values(version=version, **values)
    return changed(statement.execution_options(synchronize_session=False)) == 1


def changed(statement: Update | Delete) -> int:
    """Run a bulk UPDATE or DELETE in the session's transaction; how many rows it changed."""
    return cast(CursorResult[Any], db.session.execute(statement)).rowcount


# --- Many rows in one statement -------------------------------------------------------------------
#
# An engine batch writes hundreds of rows per statement. As multi-row VALUES or IN lists every
# row costs a placeholder per column, which psycopg parses in Python and PostgreSQL plans (a
# 500-row audit INSERT had 10,000). On PostgreSQL the rows travel as one array per column
# instead (`unnest`): a handful of parameters, whatever the number of rows. SQLite keeps the
# plain statements (its driver runs executemany in C and plans nothing per row).


# The arrays' parameters are named so, and sent in binary (`tune_postgres`).
_ARRAY_PREFIX = "given_"
_ARRAY_PLACEHOLDER = re.compile(r"%\((" + _ARRAY_PREFIX + r"\w+)\)s")


def tune_postgres(engine: Engine) -> None:
    """The arrays of `insert_rows`, `update_rows` and `compare_and_set_many` go in psycopg's
    binary format (`%b`): as text every element is quoted and escaped in Python, which cost
    more than the rest of an engine batch's client work. Once per engine, however many apps
    use it (the tests' apps share one per database: tests/support/engines.py)."""
    if not event.contains(engine, "before_cursor_execute", _binary_arrays):
        event.listen(engine, "before_cursor_execute", _binary_arrays, retval=True)


def _binary_arrays(_conn, _cursor, statement, parameters, _context, _executemany):
    if _ARRAY_PREFIX in statement:
        statement = _ARRAY_PLACEHOLDER.sub(r"%(\1)b", statement)
    return statement, parameters


def _on_postgres() -> bool:
    return db.session.get_bind().dialect.name == "postgresql"


def _arrays(table: Table, rows: Sequence[dict[str, Any]], names: Sequence[str]):
    """The rows as a derived table `given(name, ..., ordinality)` of one array per column."""
    arrays = [bindparam(f"{_ARRAY_PREFIX}{name}", [row[name] for row in rows],
                        type_=_array_of(table.c[name])) for name in names]
    return (func.unnest(*arrays).table_valued(*names, with_ordinality="ordinality")
            .render_derived(name="given"))


def in_(column: Any, values: Iterable[Any]) -> ColumnElement[bool]:
    """`column IN (values)`: one array parameter on PostgreSQL (`= ANY`)."""
    values = list(values)
    if not _on_postgres():
        return column.in_(values)
    return column == any_(bindparam(None, values, type_=_array_of(column)))


@functools.cache
def _array_of(column: Any) -> postgresql.ARRAY:
    """The array type of a column's values, made once: SQLAlchemy derives a statement's cache
    key from its types, and a type's key is worked out once per type object."""
    return postgresql.ARRAY(column.type)


def insert_rows(table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """INSERT `rows` (dicts with the same keys) in one statement, in their order."""
    if not rows:
        return
    if not _on_postgres():
        db.session.execute(insert(table), list(rows))
        return
    names = list(rows[0])
    source = _arrays(table, rows, names)
    db.session.execute(insert(table).from_select(
        names, select(*[source.c[name] for name in names]).order_by(source.c.ordinality)))


def update_rows(table: Table, key: str, rows: Sequence[dict[str, Any]],
                *where: ColumnElement[bool], **same: Any) -> None:
    """UPDATE the rows whose `key` column matches each row's `key`, setting each its own values
    (the other keys of its dict, the same in every dict) and `same` for all; `where` narrows."""
    if not rows:
        return
    names = list(rows[0])
    if not _on_postgres():
        statement = (table.update().where(table.c[key] == bindparam(f"_{key}"), *where)
                     .values({**{name: bindparam(f"_{name}") for name in names if name != key},
                              **same}))
        db.session.execute(statement, [{f"_{name}": row[name] for name in names}
                                       for row in rows])
        return
    source = _arrays(table, rows, names)
    db.session.execute(
        table.update().where(table.c[key] == source.c[key], *where)
        .values({**{name: source.c[name] for name in names if name != key}, **same}))


def compare_and_set_many(table: Table, pairs: Sequence[tuple[int, int]], **values: Any) -> int:
    """`compare_and_set` for many rows of `table` at once: write `values` to every row whose
    (id, version) is among `pairs`, bumping its version. How many rows were written."""
    if not pairs:
        return 0
    version = {"version": table.c.version + 1}
    if not _on_postgres():
        return changed(table.update().where(tuple_(table.c.id, table.c.version).in_(pairs))
                       .values(**version, **values))
    source = _arrays(table, [{"id": i, "version": v} for i, v in pairs], ("id", "version"))
    return changed(table.update()
                   .where(table.c.id == source.c.id, table.c.version == source.c.version)
                   .values(**version, **values))
