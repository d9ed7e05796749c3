"""Fixtures all the way down: a real database and a real Redis per test run, an app per test.

Database: every test that uses one runs on SQLite in a temporary directory (the schema built
once, copied per test) and, when RAILYARD_TEST_POSTGRES names a PostgreSQL server, again on a
database of our own there (tables emptied per test). Redis: a real redis-server of this test
run's own (webapp/redis_conn.py), or the server RAILYARD_TEST_REDIS_URL names (its databases 1,
2, ... flushed per test). A REDIS_URL or DATABASE_URL exported for `make run` never reaches the
tests.
"""

import functools
import gc
import os
import shutil
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis as redis_lib
from flask.testing import FlaskClient
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import create_engine, text

from tests.support import engines, routing, statements, templates
from webapp import create_app
from webapp.extensions import db

SECRET = "test-secret-key"
pytest_plugins = [
    "tests.support.factories",
    "tests.support.pipelines",
    "tests.support.browser",
    "tests.support.streams",
]


def pytest_configure(config):
    # The user's own Redis, database and instance folder (exported for `make run`) are not the
    # tests' to flush: neither the apps built here nor the processes the tests start see them.
    for name in ("REDIS_URL", "DATABASE_URL", "INSTANCE_PATH"):
        os.environ.pop(name, None)
    # An app per test; its URL builders, templates and SQL compiled once per run.
    routing.install()
    templates.install()
    statements.install()
    engines.install()
    # redis-py reads its own version from the installed packages' metadata for every client it
    # makes (~1 ms each); the apps and fixtures of a test make several.
    redis_lib.utils.get_lib_version = functools.cache(redis_lib.utils.get_lib_version)


def pytest_collection_finish(session):
    """The code and the collected tests are there for the whole run: frozen, the garbage
    collector no longer walks them, and it runs less often. Every test builds an app of its own
    (thousands of objects), so full collections over an ever larger heap were about a fifth of
    a worker's CPU. A worker then peaks near 380 MB instead of 300."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


def _worker_index(config) -> int:
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name[2:]) if name.startswith("gw") else 0


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory, request):
    url = os.environ.get("RAILYARD_TEST_REDIS_URL")
    if url:
        base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
        yield f"{base}/{1 + _worker_index(request.config)}"
        return
    from webapp.redis_conn import redis_url_of, start_embedded

    server = start_embedded(tmp_path_factory.mktemp("redis"))
    yield redis_url_of(server)
    server.shutdown()


# A test that takes seconds of its own (a browser, real processes, a walk over every route).
HEAVY = ("slow", "e2e", "chaos", "prometheus")
# The longest of them: a chaos run waits about 25 s on its timed events (a freeze, a stopped
# line, rollout steps) while its forked workers use a third of a core.
LONGEST = "chaos"
DATABASES = ("sqlite", "postgresql")


def _postgres_under_test() -> str | None:
    return os.environ.get("RAILYARD_TEST_POSTGRES") or None


def pytest_generate_tests(metafunc):
    """`postgres_server`, the database under test: a PostgreSQL server's URL, or None for
    SQLite. Every test whose outcome may depend on the database reaches it through this name
    (the app, the database and every fixture built on them depend on it), and runs once on
    each: SQLite, and PostgreSQL when RAILYARD_TEST_POSTGRES names a server."""
    if "postgres_server" in metafunc.fixturenames:
        server = _postgres_under_test()
        metafunc.parametrize("postgres_server", [None, server] if server else [None],
                             ids=DATABASES if server else DATABASES[:1])


def database_of(item) -> str | None:
    """"sqlite" or "postgresql": the database a collected test runs on; None for a test that
    uses none (the audit log's wording, pure functions, `flask run-all` on a database of its
    own)."""
    callspec = getattr(item, "callspec", None)
    if callspec is None or "postgres_server" not in callspec.params:
        return None
    return "postgresql" if callspec.params["postgres_server"] else "sqlite"


def _runs_on(item, database: str | None) -> bool:
    """Tests of one database's own behaviour (SQLite's locking, PostgreSQL's deadlocks) do not
    run on the other. Browser journeys run on PostgreSQL only when marked `on_postgresql` (the
    board and the SDK's fast path, whose SQL is PostgreSQL's own); there the other journeys'
    pages and requests are checked through the test client."""
    if database == "postgresql":
        return item.get_closest_marker("sqlite_only") is None and (
            item.get_closest_marker("e2e") is None
            or item.get_closest_marker("on_postgresql") is not None)
    return item.get_closest_marker("postgresql_only") is None


def pytest_collection_modifyitems(config, items):
    kept = []
    for item in items:
        database = database_of(item)
        if _runs_on(item, database):
            item.user_properties.append(("database", database))  # for the summary below
            kept.append(item)
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
    # The heavy tests first, the chaos runs before the others (each group in its random order),
    # then the rest in theirs. xdist's worksteal gives each worker a contiguous part of this
    # list and steals from its end, so one worker starts the heavy tests and the others take
    # them over as they run dry: a heavy test started last runs on alone while the other cores
    # sit idle (a chaos run did, for 30 s at a third of the cores). Spreading the heavy tests
    # over every worker from the start cost 20 to 30 s more CPU and as much wall time (three
    # seeds, each run both ways).
    items.sort(key=_heaviest_first)


def _heaviest_first(item) -> int:
    if item.get_closest_marker(LONGEST):
        return 0
    return 1 if any(item.get_closest_marker(mark) for mark in HEAVY) else 2


_tests_by_database: Counter[str | None] = Counter()
_seconds_by_database: Counter[str | None] = Counter()


def pytest_runtest_logreport(report):
    """Counts each database's tests and the time they took (setup, call and teardown; with
    xdist, in the process that prints the summary)."""
    database = dict(report.user_properties).get("database")
    _seconds_by_database[database] += report.duration
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _tests_by_database[database] += 1


def pytest_terminal_summary(terminalreporter):
    names = {"sqlite": "SQLite", "postgresql": "PostgreSQL", None: "no database"}
    parts = [f"{names[database]}: {_tests_by_database[database]} tests, "
             f"{_seconds_by_database[database]:.0f} s"
             for database in (*DATABASES, None) if database in _seconds_by_database]
    if parts:
        terminalreporter.write_sep("-", "test time by database (summed over the workers): "
                                   + "; ".join(parts))


@pytest.fixture
def database_template(request, postgres_server):
    """The database with the schema that a test's own starts from, built once per test run for
    each database: ('sqlite', path, None) or ('postgresql', url, cleaner)."""
    return request.getfixturevalue("postgres_template" if postgres_server else "sqlite_template")


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory, request):
    """A database of this worker's own on the server under test, with the schema."""
    server = _postgres_under_test()
    assert server is not None
    name = f"railyard_test_{os.getpid()}_{_worker_index(request.config)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    # Commits need not wait for the disk: a test database that a crash loses costs nothing.
    url = server.rsplit("/", 1)[0] + "/" + name + "?options=-c%20synchronous_commit%3Doff"
    app = create_app(_config(tmp_path_factory.mktemp("pg"), url, "redis://unused"))
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    # One connection kept for the whole run: a new backend per test would load the catalog
    # entries of every table it empties again.
    cleaner = create_engine(url, pool_size=1)
    yield ("postgresql", url, cleaner)
    cleaner.dispose()
    engines.dispose_all()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema")
    path = folder / "template.db"
    app = create_app(_config(folder, f"sqlite:///{path}", "redis://unused"))
    with app.app_context():
        db.create_all()
        db.engine.dispose()
    return ("sqlite", path, None)


def _config(instance: Path, database_url: str, redis_url: str) -> dict:
    return {
        "TESTING": True,
        "SECRET_KEY": SECRET,
        "INSTANCE_PATH": str(instance),
        "SQLALCHEMY_DATABASE_URI": database_url,
        "REDIS_URL": redis_url,
        "SERVER_NAME": None,
        # The cheapest scrypt werkzeug's memory bound allows (0.25 ms a hash): thousands of users
        # are made and signed in; the product's own cost is checked by tests/views/test_throttle.py.
        "PASSWORD_HASH_METHOD": "scrypt:128:8:1",
    }


@pytest.fixture
def database_url(database_template, tmp_path):
    kind, where, cleaner = database_template
    if kind == "sqlite":
        path = tmp_path / "railyard.db"
        shutil.copy(where, path)
        return f"sqlite:///{path}"
    with cleaner.begin() as conn:
        conn.exec_driver_sql(_empty_postgres())
    return where


@functools.cache
def _empty_postgres() -> str:
    """Every table emptied, children first, and every id sequence back at 1, in one round trip:
    on the few rows a test leaves, DELETE costs far less than TRUNCATE (which makes new files
    for every table and index)."""
    deletes = "".join(f'DELETE FROM "{t.name}";' for t in reversed(db.metadata.sorted_tables))
    return deletes + ("SELECT setval(c.oid, 1, false) FROM pg_class c "
                      "WHERE c.relkind = 'S' AND c.relnamespace = 'public'::regnamespace;")


@pytest.fixture
def app_config(tmp_path, database_url, redis_url):
    """Override in a test module to change the app's configuration."""
    return _config(tmp_path, database_url, redis_url)


@pytest.fixture
def app(app_config, redis_url):
    app = create_app(app_config)
    app.test_client_class = CsrfClient
    redis_lib.Redis.from_url(redis_url).flushdb()
    with app.app_context():
        yield app
        db.session.remove()
        if not engines.shared(db.engine):
            db.engine.dispose()


class CsrfClient(FlaskClient):
    """A test client that sends a valid CSRF token with every unsafe request, unless csrf=False."""

    def open(self, *args, csrf: bool = True, **kwargs):
        method = (kwargs.get("method") or "GET").upper()
        if csrf and method not in ("GET", "HEAD", "OPTIONS"):
            headers = dict(kwargs.pop("headers", None) or {})
            headers.setdefault("X-CSRFToken", self.csrf_token())
            kwargs["headers"] = headers
        # A fresh app context per request, as in production: its own `g` and database session.
        with self.application.app_context():
            response = super().open(*args, **kwargs)
        db.session.expire_all()  # the test's own session sees what the request committed
        return response

    def csrf_token(self) -> str:
        with self.session_transaction() as session:
            raw = session.setdefault("csrf_token", uuid.uuid4().hex)
        return URLSafeTimedSerializer(SECRET, salt="wtf-csrf-token").dumps(raw)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def hx(app):
    """A client whose requests look like htmx's."""
    client = app.test_client()
    client.environ_base["HTTP_HX_REQUEST"] = "true"
    return client


@pytest.fixture
def login(app):
    """login(client, user): sign the client in as user."""

    def _login(client, user):
        with client.session_transaction() as session:
            session["_user_id"] = user.get_id()
            session["_fresh"] = True
        return client

    return _login
