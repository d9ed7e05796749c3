"""The migrations build exactly the schema the models describe."""

import os
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from sqlalchemy import MetaData, create_engine, text

from webapp import create_app
from webapp.extensions import db


def test_migrations_match_models(tmp_path, redis_url):
    url = f"sqlite:///{tmp_path / 'migrated.db'}"
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": redis_url,
                      "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x"})
    with app.app_context():
        upgrade()
        engine = create_engine(url)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        engine.dispose()
        db.engine.dispose()
    assert diff == []


# The schema every database made before this round of migrations has; the ones after it must
# carry its rows over.
BEFORE_THIS_ROUND = "e65d2b5e022c"


def _filler(column, row_id: int):
    """A value of the column's type for a NOT NULL column without a default."""
    try:
        kind = column.type.python_type
    except NotImplementedError:
        kind = str
    if column.foreign_keys or kind is int:
        return row_id
    if kind is bool:
        return False
    if kind is float:
        return 1.0
    if kind is datetime:
        return datetime(2026, 1, 1, tzinfo=UTC)
    if kind is dict:
        return {}
    if kind is list:
        return []
    return f"{column.name}-{row_id}"


def _fill_every_table(engine) -> dict[str, int]:
    """One row in every table (parents first, foreign keys pointing at row 1)."""
    metadata = MetaData()
    metadata.reflect(engine)
    counts = {}
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if table.name == "alembic_version":
                continue
            row = {column.name: _filler(column, 1) for column in table.columns
                   if not column.nullable or column.primary_key or column.foreign_keys}
            conn.execute(table.insert().values(**row))
            counts[table.name] = 1
    return counts


CALENDAR_TABLES = ("environment_schedule", "deployment_window", "freeze", "freeze_environment",
                   "line_stop")


def _fill_new_tables(engine, names: tuple[str, ...]) -> dict[str, int]:
    """One row in each of these tables the upgrade added (pointing at the rows that were
    there)."""
    metadata = MetaData()
    metadata.reflect(engine)
    counts = {}
    with engine.begin() as conn:
        for table in metadata.sorted_tables:
            if table.name not in names:
                continue
            row = {column.name: _filler(column, 1) for column in table.columns
                   if not column.nullable or column.primary_key or column.foreign_keys}
            conn.execute(table.insert().values(**row))
            counts[table.name] = 1
    return counts


@pytest.fixture
def empty_database(tmp_path, postgres_server):
    server = postgres_server
    if not server:
        yield f"sqlite:///{tmp_path / 'upgraded.db'}"
        return
    name = f"railyard_upgrade_{os.getpid()}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield server.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrading_a_database_with_data_keeps_every_row(empty_database, tmp_path, redis_url):
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": empty_database,
                      "REDIS_URL": redis_url, "INSTANCE_PATH": str(tmp_path), "SECRET_KEY": "x"})
    with app.app_context():
        upgrade(revision=BEFORE_THIS_ROUND)
        engine = create_engine(empty_database)
        before = _fill_every_table(engine)
        upgrade()
        added = _fill_new_tables(engine, CALENDAR_TABLES)
        with engine.connect() as conn:
            after = {name: conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar()
                     for name in before}
            # The release calendar (h16_calendar): runs that were in flight are held by nothing.
            hold = conn.execute(text("SELECT hold_kind, hold_id, held_since, held_due_at "
                                     "FROM pipeline_run")).one()
            calendar_rows = {name: conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar()
                             for name in added}
            epoch = conn.execute(text('SELECT session_epoch FROM "user"')).scalar()
            on_unhealthy = conn.execute(text("SELECT on_unhealthy FROM pipeline_stage")).scalar()
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        engine.dispose()
        db.engine.dispose()
    assert after == before
    assert tuple(hold) == (None, None, None, None)
    assert calendar_rows == added == {name: 1 for name in CALENDAR_TABLES}
    assert (epoch, on_unhealthy) == (0, "HOLD")
    assert diff == []
